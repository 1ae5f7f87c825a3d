import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalObjectStore, type ObjectStore, type PartIndex } from '@sluice/object-store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, type TestApi } from './helpers.js';

let api: TestApi;
let dir: string;
let store: ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-results-'));
  store = createLocalObjectStore({ root: dir });
  api = await createTestApi({}, { results: { store, prefix: '', signedUrlTtlMs: 60_000 } });
});
afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A committed part as the sink writes it: the file, then the index record that names it. */
async function commitPart(jobId: string, partition: number, start: number, lines: string[]) {
  const body = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  const name = `${jobId}/results/part-${partition}-${start}-${start + lines.length - 1}.jsonl`;
  await store.put(name, body);
  const index: PartIndex = {
    partition,
    start,
    end: start + lines.length - 1,
    results: {
      name,
      records: lines.length,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    },
    errors: null,
    rows: lines.map((_, i) => start + i),
    counts: { succeeded: lines.length, failed: 0, cancelled: 0, invalid: 0 },
    tokens: { prompt: 0, completion: 0 },
    firstCompletedAt: null,
    lastCompletedAt: null,
  };
  await store.put(`${jobId}/_index/${partition}-${start}.json`, Buffer.from(JSON.stringify(index)));
}

describe('results listing on a store that cannot sign URLs (local directory)', () => {
  // Regression: every file's url was the job's whole results stream, so a file downloaded by its
  // url never matched its own bytes or sha256.
  it('gives each file a url that downloads that file alone, matching its bytes and sha256', async () => {
    const job = await createJob(api);
    await commitPart(job.id, 0, 0, ['{"custom_id":"a"}', '{"custom_id":"b"}']);
    await commitPart(job.id, 1, 0, ['{"custom_id":"c"}']);
    const res = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/results`, headers: api.auth('alice') });
    expect(res.statusCode, res.body).toBe(200);
    const files = (res.json() as { files: Array<{ url: string; bytes: number; sha256: string; records: number }> })
      .files;
    expect(files).toHaveLength(2);
    expect(new Set(files.map((f) => f.url)).size).toBe(2);
    for (const f of files) {
      const got = await api.app.inject({ method: 'GET', url: f.url, headers: api.auth('alice') });
      expect(got.statusCode).toBe(200);
      expect(got.rawPayload.length).toBe(f.bytes);
      expect(createHash('sha256').update(got.rawPayload).digest('hex')).toBe(f.sha256);
    }
    // Not a file the job's parts name, nor another tenant's.
    const missing = await api.app.inject({
      method: 'GET',
      url: `/v1/jobs/${job.id}/results/files/results/part-9-0-0.jsonl`,
      headers: api.auth('alice'),
    });
    expect(missing.statusCode).toBe(404);
    expect((await api.app.inject({ method: 'GET', url: files[0]!.url, headers: api.auth('bob') })).statusCode).toBe(
      404,
    );
    // Every results route is the owner's alone: what alice reads, bob gets 404 for.
    await store.put(`${job.id}/manifest.json`, Buffer.from('{"status":"completed"}'));
    for (const url of [
      `/v1/jobs/${job.id}/results`,
      `/v1/jobs/${job.id}/results/manifest`,
      `/v1/jobs/${job.id}/results/results`,
      `/v1/jobs/${job.id}/results/errors`,
    ]) {
      expect((await api.app.inject({ method: 'GET', url, headers: api.auth('alice') })).statusCode, url).toBe(200);
      const bob = await api.app.inject({ method: 'GET', url, headers: api.auth('bob') });
      expect([bob.statusCode, bob.json().error.code], url).toEqual([404, 'NOT_FOUND']);
    }
  });
});
