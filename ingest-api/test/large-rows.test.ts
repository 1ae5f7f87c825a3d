import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, readOutcomes, readPrompts, type TestApi } from './helpers.js';

// The broker's own default for a record batch: what a lane topic made before Sluice set its own
// (or by an operator) holds.
const brokerDefault = { 'max.message.bytes': '1048588' };
// The longest prompt a line of 1 MiB (the API's line limit) holds: {"custom_id":"…","prompt":"…"}.
const longest = (customId: string) => 1024 ** 2 - JSON.stringify({ custom_id: customId, prompt: '' }).length;

/** Prompts of `bytes` characters, a different one per row. */
function rows(n: number, bytes: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const head = `Row ${i}: summarize the filing below.`;
    out.push(
      JSON.stringify({ custom_id: `r${i}`, prompt: head + ' lorem'.repeat(Math.ceil((bytes - head.length) / 6)) }),
    );
  }
  return out.join('\n') + '\n';
}

async function upload(api: TestApi, jobId: string, body: string) {
  return api.app.inject({
    method: 'PUT',
    url: `/v1/jobs/${jobId}/input`,
    headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
    payload: body,
  });
}

describe('uploads of real-sized rows (real Kafka)', () => {
  let api: TestApi;
  beforeAll(async () => {
    // Transactions of 5,000 rows, as by default: 5,000 rows of 2 KB are 10 MB.
    api = await createTestApi({ SLUICE_UPLOAD_CHUNK_ROWS: '5000' }, { laneTopicConfig: brokerDefault });
  });
  afterAll(() => api?.close());

  // Regression: a transaction's prompts went in one send, so each partition's batch passed the
  // broker's max.message.bytes and the upload failed with UPLOAD_INTERRUPTED, 0 rows committed.
  it('takes 3,000 rows of 2 KB prompts on a lane topic at the broker default of 1 MiB', async () => {
    const job = await createJob(api);
    const res = await upload(api, job.id, rows(3_000, 2_048));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 3_000, invalid: 0, total: 3_000 });
    const prompts = await readPrompts(api, job.id, 3_000);
    expect(new Set(prompts.map((p) => p.rowIndex)).size).toBe(3_000);
  });

  // Regression: 20,000 short rows were refused after 10,000.
  it('takes 20,000 short rows', async () => {
    const job = await createJob(api);
    const res = await upload(api, job.id, rows(20_000, 90));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 20_000, total: 20_000 });
  });

  it('makes a row whose record cannot fit the lane topic its own error, and commits the rest', async () => {
    const job = await createJob(api);
    const big = JSON.stringify({ custom_id: 'big', prompt: 'x'.repeat(longest('big')) });
    const res = await upload(api, job.id, rows(2, 100) + big + '\n' + rows(1, 100).replace('"r0"', '"r9"'));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json(), res.body).toMatchObject({ accepted: 3, invalid: 1, total: 4 });
    expect(res.json().errors[0]).toMatchObject({ line: 3, code: 'INPUT_RECORD_TOO_LARGE' });
    expect(res.json().errors[0].message).toMatch(/max\.message\.bytes/);
    const [outcome] = await readOutcomes(api, job.id, 1);
    expect(outcome).toMatchObject({ rowIndex: 2, customId: 'big', status: 'failed' });
  });
});

describe('a row near the 1 MiB line limit, on a topic Sluice made (real Kafka)', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await createTestApi();
  });
  afterAll(() => api?.close());

  it('is accepted and written whole: Sluice makes its topics to hold any row the API accepts', async () => {
    const job = await createJob(api);
    const prompt = 'y'.repeat(longest('near'));
    const res = await upload(api, job.id, JSON.stringify({ custom_id: 'near', prompt }) + '\n');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 1, invalid: 0 });
    const [p] = await readPrompts(api, job.id, 1);
    expect(p?.messages[0]?.content.length).toBe(prompt.length);
  });
});
