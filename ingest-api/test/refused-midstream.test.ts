import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JobView } from '@sluice/job-store';
import { waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, type TestApi } from './helpers.js';

// An upload refused while its client is still sending must still get its answer. The refusal
// used to destroy the request stream (through a pipeline): under inject that rejected the request
// instead of answering, an unhandled rejection when nothing awaited it yet. Over real HTTP the
// answers are checked here too, so the fix (pipe, stop reading, close after the answer) keeps them.

let api: TestApi;
let port: number;
beforeAll(async () => {
  api = await createTestApi({ SLUICE_UPLOAD_CHUNK_ROWS: '10', SLUICE_MAX_UPLOAD_BYTES: '4096' });
  await api.app.listen({ port: 0, host: '127.0.0.1' });
  port = (api.app.server.address() as AddressInfo).port;
});
afterAll(() => api?.close());

const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${JSON.stringify({ prompt: `row ${from + i}` })}\n`).join('');

/** A PUT of the job's input over a real socket; the caller writes the body and may never end it. */
function openUpload(jobId: string) {
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    method: 'PUT',
    path: `/v1/jobs/${jobId}/input`,
    headers: { ...api.auth('alice'), 'content-type': 'application/jsonl', 'transfer-encoding': 'chunked' },
  });
  req.on('error', () => undefined); // writes after the server's answer may fail; the answer is what counts
  const answer = new Promise<{ status: number; body: { error?: { code: string; message: string } } }>(
    (resolve, reject) => {
      req.on('response', (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        res.on('error', reject);
      });
      req.on('error', reject);
    },
  );
  return { req, answer };
}

describe('an upload refused while the client is still sending (real HTTP, Kafka and Redis)', () => {
  it('a cancel mid-upload answers 409 JOB_NOT_OPEN, not a reset connection', async () => {
    const job = await createJob(api);
    const view = new JobView(api.redis);
    const { req, answer } = openUpload(job.id);
    req.write(rows(0, 15));
    await waitFor('the first chunk committed', async () =>
      ((await view.get(job.id))?.accepted ?? 0) >= 10 ? true : undefined,
    );
    const del = await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(del.json().status).toBe('cancelled');
    req.write(rows(15, 10)); // the next chunk's commit is fenced; the body is not ended
    const res = await answer;
    req.destroy();
    expect(res.status).toBe(409);
    expect(res.body.error?.code).toBe('JOB_NOT_OPEN');
    expect((await view.get(job.id))?.status).toBe('cancelled');
  }, 60_000);

  it('an upload over the size limit answers 413 UPLOAD_TOO_LARGE while the client still sends', async () => {
    const job = await createJob(api);
    const { req, answer } = openUpload(job.id);
    req.write(rows(0, 300)); // 6.2 KB, over the 4 KiB limit
    const res = await answer;
    req.destroy();
    expect(res.status).toBe(413);
    expect(res.body.error?.code).toBe('UPLOAD_TOO_LARGE');
  }, 60_000);

  it('under inject, a refusal before the body ends answers instead of rejecting the request', async () => {
    const { PassThrough } = await import('node:stream');
    const job = await createJob(api);
    const view = new JobView(api.redis);
    const body = new PassThrough();
    const upload = api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: body,
    });
    body.write(rows(0, 15));
    await waitFor('the first chunk committed', async () =>
      ((await view.get(job.id))?.accepted ?? 0) >= 10 ? true : undefined,
    );
    await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    body.write(rows(15, 10));
    const res = await upload;
    body.end();
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('JOB_NOT_OPEN');
  }, 60_000);
});
