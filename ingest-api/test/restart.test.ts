import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { freePort, stackSettings, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../src/config.js';
import { createJob, createTestApi, readPrompts, type TestApi } from './helpers.js';

/**
 * The API as its own process, killed with SIGKILL in the middle of an upload and started again:
 * re-sending the same input resumes after the committed rows, and Kafka ends with every row
 * exactly once.
 */
describe('restart of the API mid-upload', () => {
  let api: TestApi; // shares the provider (lane) and keys with the child process
  let child: ChildProcess | undefined;
  let port = 0;
  let base = '';

  const startChild = async () => {
    const s = stackSettings();
    child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'main.ts')], {
      env: {
        ...process.env,
        SLUICE_KAFKA_BROKERS: s.kafkaBrokers.join(','),
        SLUICE_REDIS_URL: s.redisUrl,
        SLUICE_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
        SLUICE_API_KEYS: `alice:${hashApiKey(api.keys.alice)}`,
        SLUICE_MODELS: JSON.stringify({ [api.provider]: ['model-a'] }),
        SLUICE_LANE_PARTITIONS: '4',
        SLUICE_UPLOAD_CHUNK_ROWS: '1000',
        SLUICE_UPLOAD_LOCK_MS: '1000',
        SLUICE_INGEST_PORT: String(port),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitFor(
      'the API to listen',
      async () => ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
  };

  beforeAll(async () => {
    api = await createTestApi();
    port = await freePort(20_000, 24_000);
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await api?.close();
  });

  it('resumes after the committed rows and ends with each row exactly once', async () => {
    await startChild();
    const headers = { authorization: `Bearer ${api.keys.alice}`, 'content-type': 'application/json' };
    const created = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ provider: api.provider, model: 'model-a' }),
    });
    const job = (await created.json()) as { id: string };
    const rows = 20_000;
    const line = (i: number) => `${JSON.stringify({ custom_id: `r${i}`, prompt: `Prompt number ${i}` })}\n`;

    // Send the input slowly; kill the API once a few chunks are committed.
    const upload = request(`${base}/v1/jobs/${job.id}/input`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/jsonl' },
    });
    upload.on('error', () => undefined);
    let sent = 0;
    const pump = setInterval(() => {
      let batch = '';
      for (let k = 0; k < 500 && sent < rows; k++) batch += line(sent++);
      if (batch) upload.write(batch);
    }, 20);
    const queuedAtKill = await waitFor(
      'some chunks to commit',
      async () => {
        const r = await fetch(`${base}/v1/jobs/${job.id}`, { headers });
        const queued = ((await r.json()) as { counts: { queued: number } }).counts.queued;
        return queued >= 3_000 ? queued : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    child!.kill('SIGKILL');
    clearInterval(pump);
    upload.destroy();
    expect(sent).toBeLessThan(rows);

    await startChild();
    let all = '';
    for (let i = 0; i < rows; i++) all += line(i);
    const again = await waitFor(
      'the upload lock of the killed process to expire',
      async () => {
        const r = await fetch(`${base}/v1/jobs/${job.id}/input`, {
          method: 'PUT',
          headers: { ...headers, 'content-type': 'application/jsonl' },
          body: all,
        });
        return r.status === 409 ? undefined : r;
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    const summary = (await again.json()) as { resumedFrom: number; accepted: number; total: number };
    expect(again.status).toBe(200);
    expect(summary.total).toBe(rows);
    expect(summary.resumedFrom).toBeGreaterThanOrEqual(queuedAtKill);
    expect(summary.resumedFrom + summary.accepted).toBe(rows);

    const prompts = await readPrompts(api, job.id, rows);
    expect(prompts).toHaveLength(rows);
    expect(new Set(prompts.map((p) => p.rowIndex)).size).toBe(rows);
    expect(prompts.every((p) => p.customId === `r${p.rowIndex}`)).toBe(true);
  });
});

/**
 * Regression: an API killed after a chunk's transaction committed but before the Redis view took
 * the new counts made the next upload re-send that chunk (1,000 prompts twice on the lane).
 */
describe('a crash between a chunk commit and the view update', () => {
  it('resumes from the committed state in sluice.jobs, sending no row twice', async () => {
    const api = await createTestApi();
    try {
      const job = await createJob(api);
      const line = (i: number) => `${JSON.stringify({ custom_id: `r${i}`, prompt: `Prompt ${i}` })}\n`;
      let first = '';
      for (let i = 0; i < 2_500; i++) first += line(i);
      // A cut-off upload: 2,000 rows commit in two chunks, the rest is rolled back.
      const body = new PassThrough();
      const upload = api.app.inject({
        method: 'PUT',
        url: `/v1/jobs/${job.id}/input`,
        headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
        payload: body,
      });
      body.write(first);
      await waitFor('two committed chunks', async () => {
        const j = await api.jobs.view.get(job.id);
        return j && j.accepted >= 2_000 ? j : undefined;
      });
      body.destroy(new Error('client gone'));
      await upload.catch(() => undefined);
      await waitFor('the cut-off upload to let go of its lock', async () =>
        (await api.redis.exists(`sluice:upload:${job.id}`)) === 0 ? true : undefined,
      );
      // What a crash right after the second commit leaves: the view one chunk behind, the marker set.
      const behind = { ...(await api.jobs.view.get(job.id))!, accepted: 1_000 };
      await api.jobs.view.put(behind);
      await api.redis.set(`sluice:upload:${job.id}:pending`, '2000');

      let all = '';
      for (let i = 0; i < 4_000; i++) all += line(i);
      const again = await api.app.inject({
        method: 'PUT',
        url: `/v1/jobs/${job.id}/input`,
        headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
        payload: all,
      });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ resumedFrom: 2_000, accepted: 2_000, total: 4_000 });
      const prompts = await readPrompts(api, job.id, 4_000);
      expect(prompts).toHaveLength(4_000);
      expect(new Set(prompts.map((p) => p.rowIndex)).size).toBe(4_000);
    } finally {
      await api.close();
    }
  });
});
