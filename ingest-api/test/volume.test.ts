import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, readPrompts, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await createTestApi({ SLUICE_UPLOAD_CHUNK_ROWS: '5000' });
});
afterAll(() => api?.close());

describe('a 100,000-line upload', () => {
  it('puts every row in Kafka exactly once, with its job id and row index', async () => {
    const job = await createJob(api, { parallelism: 2 });
    const rows = 100_000;
    const lines: string[] = [];
    for (let i = 0; i < rows; i++)
      lines.push(JSON.stringify({ custom_id: `c-${i}`, prompt: `Summarize filing number ${i}.` }));
    const res = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/x-ndjson' },
      payload: lines.join('\n'),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ accepted: rows, invalid: 0, total: rows });

    const prompts = await readPrompts(api, job.id, rows);
    expect(prompts).toHaveLength(rows);
    const seen = new Uint8Array(rows);
    for (const p of prompts) {
      expect(p.jobId).toBe(job.id);
      expect(p.promptId).toBe(`${job.id}:${p.rowIndex}`);
      expect(p.customId).toBe(`c-${p.rowIndex}`);
      seen[p.rowIndex]!++;
    }
    expect(seen.every((n) => n === 1)).toBe(true);
  }, 180_000);
});
