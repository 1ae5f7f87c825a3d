import { PassThrough } from 'node:stream';
import { JobView } from '@sluice/job-store';
import { waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, readPrompts, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  // The defaults: transactions of 5,000 rows, the first of 100.
  api = await createTestApi({ SLUICE_UPLOAD_CHUNK_ROWS: '5000', SLUICE_UPLOAD_FIRST_CHUNK_ROWS: '100' });
});
afterAll(() => api?.close());

const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${JSON.stringify({ prompt: `row ${from + i}` })}\n`).join('');

describe("an upload's first transactions (real Kafka and Redis)", () => {
  // Issue 31: `npm run demo` (3,000 rows) waited for its whole upload before the first call, and a
  // large upload for its first 5,000 rows: the first transaction now holds 100 rows, the next 200...
  it('commits the first hundred rows while the upload still runs, then chunks that double', async () => {
    const job = await createJob(api);
    const view = new JobView(api.redis);
    const body = new PassThrough();
    const upload = api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: body,
    });
    body.write(rows(0, 150));
    const seen = await waitFor('the first chunk committed before the upload ends', async () => {
      const j = await view.get(job.id);
      return j && j.accepted > 0 ? j : undefined;
    });
    expect(seen.accepted).toBe(100);
    expect(seen.status).toBe('open');
    body.write(rows(150, 250)); // 400 rows: chunks of 100 and 200 committed, 100 gathering
    await waitFor('the second chunk', async () => ((await view.get(job.id))?.accepted === 300 ? true : undefined));
    body.end(rows(400, 2_600));
    const res = await upload;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 3_000, total: 3_000, status: 'sealed' });
    const prompts = await readPrompts(api, job.id, 3_000);
    expect(new Set(prompts.map((p) => p.rowIndex)).size).toBe(3_000);
  }, 60_000);
});
