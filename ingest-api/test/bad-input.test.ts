import { gzipSync } from 'node:zlib';
import { badRowCorpus, corpusUpload } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, readOutcomes, readPrompts, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await createTestApi();
});
afterAll(() => api?.close());

const upload = (jobId: string, payload: string | Buffer, contentType = 'application/jsonl') =>
  api.app.inject({
    method: 'PUT',
    url: `/v1/jobs/${jobId}/input`,
    headers: { ...api.auth('alice'), 'content-type': contentType },
    payload,
  });

describe('bad input: each bad row gets its documented outcome and the job goes on', () => {
  it('turns every kind of bad row into an error outcome with its line and custom_id, and keeps the good rows', async () => {
    const job = await createJob(api);
    // The corpus (libs/testing): a BOM first, a blank line (no row), a CRLF line, lone surrogates,
    // a field nested 5,000 deep, and a bad row of every other kind between good rows.
    const { body, rows } = corpusUpload();
    const res = await upload(job.id, body);
    expect(res.statusCode, res.body).toBe(200);
    const bad = rows.filter((r) => r.code);
    expect(res.json()).toMatchObject({
      accepted: rows.length - bad.length,
      invalid: bad.length,
      total: rows.length,
      status: 'sealed',
    });
    const byLine = Object.fromEntries(
      (res.json().errors as Array<{ line: number; code: string }>).map((e) => [e.line, e.code]),
    );
    expect(byLine).toEqual(Object.fromEntries(badRowCorpus.flatMap((l, i) => (l.code ? [[i + 1, l.code]] : []))));
    expect(byLine).toMatchObject({ 2: 'INPUT_INVALID_JSON', 5: 'INPUT_LINE_TOO_LONG', 7: 'INPUT_DUPLICATE_CUSTOM_ID' });

    // The good rows (BOM on the first, CR on the one before the surrogates) are prompts; the bad ones are outcomes.
    const good = rows.flatMap((r, i) => (r.code ? [] : [i]));
    const prompts = await readPrompts(api, job.id, good.length);
    expect(prompts.map((p) => [p.rowIndex, p.customId]).sort()).toEqual(good.map((i) => [i, rows[i]!.customId]).sort());
    expect(prompts.find((p) => p.customId === 'ok-1')?.messages[0]?.content).toBe('fine');
    expect(prompts.find((p) => p.customId === 'ok-2')?.messages[0]?.content).toBe('also fine');
    const outcomes = await readOutcomes(api, job.id, bad.length);
    expect(outcomes.every((o) => o.status === 'failed' && o.error !== null && o.attempts === 0)).toBe(true);
    // Each error carries its row's custom_id where one can be read (a missing prompt, a wrong type,
    // a lone surrogate in the prompt), so that errors can be matched to input by custom_id.
    expect(outcomes.map((o) => [o.rowIndex, o.customId, o.error?.code]).sort()).toEqual(
      rows.flatMap((r, i) => (r.code ? [[i, r.customId, r.code]] : [])).sort(),
    );
    const dup = outcomes.find((o) => o.error?.code === 'INPUT_DUPLICATE_CUSTOM_ID');
    expect(dup).toMatchObject({ customId: 'ok-1', error: { lineNumber: 7 } });
    expect(outcomes.find((o) => o.customId === 'no-prompt')?.error?.code).toBe('INPUT_MISSING_PROMPT');
  });

  // Issue 20 #12, #13: input that is not what it claims, decided and documented (docs/errors.md).
  it('refuses UTF-16 and bare gzip before any row, inflates Content-Encoding: gzip, and makes a lone surrogate a row error', async () => {
    const text = '{"prompt":"a"}\n{"prompt":"b"}\n';
    const send = (job: string, payload: Buffer, headers: Record<string, string> = {}) =>
      api.app.inject({
        method: 'PUT',
        url: `/v1/jobs/${job}/input`,
        headers: { ...api.auth('alice'), 'content-type': 'application/jsonl', ...headers },
        payload,
      });
    for (const body of [
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), // with a byte order mark
      Buffer.from(text, 'utf16le'), // without one
      gzipSync(text), // compressed, not said so
    ]) {
      const job = await createJob(api);
      const res = await send(job.id, body);
      expect([res.statusCode, res.json().error.code]).toEqual([415, 'INPUT_NOT_UTF8']);
      // The hint says how to fix it: convert to UTF-8, or say the body is gzip.
      expect(res.json().error.hint).toMatch(/iconv -f UTF-16 -t UTF-8|Content-Encoding: gzip/);
      // Nothing committed: the job is open, and the same job takes the file in UTF-8.
      expect((await send(job.id, Buffer.from(text))).json()).toMatchObject({ accepted: 2, status: 'sealed' });
    }
    // Content-Encoding: gzip is inflated (within the size limit), a corrupt stream refused.
    const gz = await createJob(api);
    expect((await send(gz.id, gzipSync(text), { 'content-encoding': 'gzip' })).json()).toMatchObject({
      accepted: 2,
      status: 'sealed',
    });
    const bad = await createJob(api);
    const corrupt = await send(bad.id, gzipSync(text).subarray(0, 12), { 'content-encoding': 'gzip' });
    expect([corrupt.statusCode, corrupt.json().error.code]).toEqual([400, 'INPUT_BAD_ENCODING']);
    const br = await send(bad.id, Buffer.from(text), { 'content-encoding': 'br' });
    expect([br.statusCode, br.json().error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // A lone surrogate would become U+FFFD in UTF-8: two custom_ids that differ only there would
    // collide. A row error, naming where; a pair (an emoji, escaped) is fine, as is an escaped NUL.
    const sur = await createJob(api);
    const res = await send(
      sur.id,
      Buffer.from(
        '{"custom_id":"s\\udc00","prompt":"x"}\n{"custom_id":"s\\udc01","prompt":"x"}\n' +
          '{"custom_id":"e","prompt":"\\ud83d\\ude00 and \\u0000"}\n{"prompt":"lone \\ud800 here"}\n',
      ),
    );
    expect(res.json()).toMatchObject({ accepted: 1, invalid: 3 });
    expect(res.json().errors.map((e: { line: number; code: string }) => [e.line, e.code])).toEqual([
      [1, 'INPUT_INVALID_UNICODE'],
      [2, 'INPUT_INVALID_UNICODE'],
      [4, 'INPUT_INVALID_UNICODE'],
    ]);
    expect(res.json().errors[0].message).toContain('custom_id');
    expect(res.json().errors[2].message).toContain('prompt');
  });

  // Issue 20 #12: a stray `}` in a JSON array and a quoting error in a CSV refused the whole
  // upload, after earlier chunks had committed: the file could never finish.
  it('makes a stray brace in a JSON array and a bad quote in a CSV errors of their rows; the rows after go on', async () => {
    const json = await createJob(api);
    const elements = Array.from({ length: 30 }, (_, i) => `{"custom_id":"j${i}","prompt":"p${i}"}`);
    elements[12] += '}';
    const res = await upload(json.id, `[${elements.join(',')}]`, 'application/json');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 29, invalid: 1, total: 30 });
    expect(res.json().errors).toEqual([expect.objectContaining({ line: 13, code: 'INPUT_INVALID_JSON' })]);
    const csv = await createJob(api);
    const lines = ['prompt,custom_id', ...Array.from({ length: 20 }, (_, i) => `p${i},c${i}`)];
    lines[6] = 'p5 said "yes,c5'; // a quote in an unquoted field
    const res2 = await upload(csv.id, `${lines.join('\n')}\n`, 'text/csv');
    expect(res2.statusCode).toBe(200);
    expect(res2.json().errors).toEqual([expect.objectContaining({ line: 7, code: 'INPUT_INVALID_CSV' })]);
    expect(res2.json()).toMatchObject({ accepted: 19, invalid: 1, status: 'sealed' });
  });

  it('refuses an empty file with INPUT_EMPTY and leaves the job open', async () => {
    const job = await createJob(api);
    for (const empty of ['', '\n\n', '\ufeff']) {
      const res = await upload(job.id, empty);
      expect(res.statusCode).toBe(422);
      expect(res.json().error).toMatchObject({ code: 'INPUT_EMPTY' });
    }
    const got = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(got.json()).toMatchObject({ status: 'open', counts: { total: null, queued: 0 } });
  });

  it('rejects an unknown provider or model at creation, naming the known ones', async () => {
    const provider = await api.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: api.auth('alice'),
      payload: { provider: 'openia', model: 'x' },
    });
    expect(provider.statusCode).toBe(400);
    expect(provider.json().error).toMatchObject({ code: 'UNKNOWN_PROVIDER', hint: `use one of: ${api.provider}` });
    const model = await api.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: api.auth('alice'),
      payload: { provider: api.provider, model: 'model-z' },
    });
    expect(model.json().error).toMatchObject({ code: 'UNKNOWN_MODEL', hint: 'use one of: model-a, model-b' });
    const extra = await api.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: api.auth('alice'),
      payload: { provider: api.provider, model: 'model-a', colour: 'red' },
    });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().error.code).toBe('VALIDATION_FAILED');
  });

  it('refuses an unreadable format and a JSON body that is not an array', async () => {
    const job = await createJob(api);
    const xml = await upload(job.id, '<rows/>', 'application/xml');
    expect(xml.statusCode).toBe(415);
    expect(xml.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const obj = await upload(job.id, '{"prompt":"x"}', 'application/json');
    expect(obj.statusCode).toBe(400);
    expect(obj.json().error.message).toMatch(/not a JSON array/);
  });

  it('rolls back a truncated upload and resumes when the same input is sent again', async () => {
    const job = await createJob(api);
    const lines = Array.from({ length: 2_500 }, (_, i) =>
      JSON.stringify({ custom_id: `r${i}`, prompt: `prompt ${i}` }),
    );
    // A JSON array cut off in the middle: the first two chunks (1,000 rows each) commit, the rest is rolled back.
    const truncated = `[${lines.join(',')}`;
    const first = await upload(job.id, truncated, 'application/json');
    expect(first.statusCode).toBe(400);
    expect(first.json().error.message).toMatch(/ends early/);
    const mid = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(mid.json()).toMatchObject({ status: 'open', counts: { queued: 2_000, total: null } });

    const second = await upload(job.id, `[${lines.join(',')}]`, 'application/json');
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json()).toMatchObject({ resumedFrom: 2_000, accepted: 500, invalid: 0, total: 2_500 });
    const prompts = await readPrompts(api, job.id, 2_500);
    const rows = prompts.map((p) => p.rowIndex).sort((a, b) => a - b);
    expect(rows).toEqual(Array.from({ length: 2_500 }, (_, i) => i));
  });

  // Regression: resume was by row count alone, so another file sent after an interrupted upload
  // had its first rows skipped silently and the rest added to the job.
  it('refuses to resume with another file (INPUT_CHANGED), and still resumes with the same one', async () => {
    const job = await createJob(api);
    const lines = Array.from({ length: 2_500 }, (_, i) =>
      JSON.stringify({ custom_id: `r${i}`, prompt: `prompt ${i}` }),
    );
    const first = await upload(job.id, `[${lines.join(',')}`, 'application/json');
    expect(first.statusCode).toBe(400);
    // Another file: the same length, one row changed among the committed ones.
    const other = [...lines];
    other[1_234] = JSON.stringify({ custom_id: 'r1234', prompt: 'another prompt' });
    const changed = await upload(job.id, `[${other.join(',')}]`, 'application/json');
    expect([changed.statusCode, changed.json().error.code]).toEqual([409, 'INPUT_CHANGED']);
    expect(changed.json().error.message).toMatch(/first 2000 rows of this upload are not the 2000 rows/);
    // A shorter file is not the same either.
    const shorter = await upload(job.id, `[${lines.slice(0, 1_500).join(',')}]`, 'application/json');
    expect([shorter.statusCode, shorter.json().error.code]).toEqual([409, 'INPUT_CHANGED']);
    const view = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(view.json()).toMatchObject({ status: 'open', counts: { queued: 2_000, total: null } });
    // The same file resumes where the first stopped.
    const same = await upload(job.id, `[${lines.join(',')}]`, 'application/json');
    expect(same.statusCode, same.body).toBe(200);
    expect(same.json()).toMatchObject({ resumedFrom: 2_000, accepted: 500, total: 2_500 });
  });
});
