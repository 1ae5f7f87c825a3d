import { PassThrough } from 'node:stream';
import { JobView } from '@sluice/job-store';
import { waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await createTestApi({ SLUICE_UPLOAD_CHUNK_ROWS: '10' });
});
afterAll(() => api?.close());

const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${JSON.stringify({ prompt: `row ${from + i}` })}\n`).join('');

describe('a cancel during an upload (real Kafka and Redis)', () => {
  // Regression: the next chunk's commit wrote the job back as open after the cancel, in the view
  // and in sluice.jobs, and the upload went on to the end.
  it('stays cancelled: the upload stops with JOB_NOT_OPEN and the job reads cancelled, also rebuilt from sluice.jobs', async () => {
    const job = await createJob(api);
    const view = new JobView(api.redis);
    const body = new PassThrough();
    const upload = api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: body,
    });
    body.write(rows(0, 25));
    await waitFor('the first chunks committed', async () =>
      ((await view.get(job.id))?.accepted ?? 0) >= 10 ? true : undefined,
    );
    const del = await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(del.json().status).toBe('cancelled');
    body.end(rows(25, 40));
    const res = await upload;
    expect({ status: res.statusCode, error: res.json().error?.code }).toEqual({ status: 409, error: 'JOB_NOT_OPEN' });
    expect(res.json().error.code).toBe('JOB_NOT_OPEN');
    expect(res.json().error.message).toMatch(/cancelled during this upload/);
    expect((await view.get(job.id))?.status).toBe('cancelled');
    // What sluice.jobs says last (the view rebuilt from it, as after Redis lost its data).
    await api.redis.del(`sluice:job:${job.id}`);
    await api.jobs.rebuildView();
    const rebuilt = await view.get(job.id);
    expect(rebuilt?.status).toBe('cancelled');
    expect(rebuilt!.accepted).toBeLessThan(65);
  }, 60_000);
});
