import { uniqueName } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, readOutcomes, readPrompts, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await createTestApi();
});
afterAll(() => api?.close());

describe('jobs API', () => {
  it('creates a job, uploads JSONL, seals it and shows its counts', async () => {
    const job = await createJob(api, { parameters: { maxTokens: 50 }, metadata: { project: 'p1' } });
    expect(job.status).toBe('open');
    const lines = [
      JSON.stringify({ custom_id: 'a', prompt: 'Summarize: rates rose.' }),
      JSON.stringify({
        custom_id: 'b',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
        ],
      }),
      JSON.stringify({
        custom_id: 'c',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'model-b', messages: [{ role: 'user', content: 'x' }], max_tokens: 7 },
      }),
    ].join('\n');
    const up = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: lines,
    });
    expect(up.statusCode, up.body).toBe(200);
    expect(up.json()).toMatchObject({ accepted: 3, invalid: 0, total: 3, status: 'sealed' });

    const got = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(got.json()).toMatchObject({
      id: job.id,
      status: 'sealed',
      metadata: { project: 'p1' },
      counts: { total: 3, queued: 3, invalid: 0 },
    });

    const prompts = await readPrompts(api, job.id, 3);
    const byRow = new Map(prompts.map((p) => [p.rowIndex, p]));
    expect([...byRow.keys()].sort()).toEqual([0, 1, 2]);
    expect(byRow.get(0)).toMatchObject({
      promptId: `${job.id}:0`,
      customId: 'a',
      model: 'model-a',
      messages: [{ role: 'user', content: 'Summarize: rates rose.' }],
    });
    expect(byRow.get(0)?.parameters.maxTokens).toBe(50);
    expect(byRow.get(2)).toMatchObject({ model: 'model-b', customId: 'c' });
    expect(byRow.get(2)?.parameters.maxTokens).toBe(7);
    expect(prompts.every((p) => p.tenant === 'alice' && job.kafka.partitions.includes(0) !== undefined)).toBe(true);
  });

  it('reads CSV with a prompt template and a JSON array', async () => {
    const csvJob = await createJob(api, { promptTemplate: 'Classify the headline "{{headline}}" for {{ticker}}.' });
    const csv = 'custom_id,headline,ticker\nr1,"Shares jump, again",ACME\nr2,Quiet day,\n';
    const up = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${csvJob.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'text/csv' },
      payload: csv,
    });
    expect(up.json()).toMatchObject({ accepted: 1, invalid: 1, total: 2 });
    expect(up.json().errors[0]).toMatchObject({ line: 3, code: 'INPUT_TEMPLATE_FIELD_MISSING' });
    const [prompt] = await readPrompts(api, csvJob.id, 1);
    expect(prompt?.messages[0]?.content).toBe('Classify the headline "Shares jump, again" for ACME.');

    const jsonJob = await createJob(api);
    const arr = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${jsonJob.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/json' },
      payload: JSON.stringify([{ prompt: 'one' }, { prompt: 'two, with [brackets] and {braces}' }, { nope: 1 }]),
    });
    expect(arr.json()).toMatchObject({ accepted: 2, invalid: 1, total: 3 });
    const outcomes = await readOutcomes(api, jsonJob.id, 1);
    expect(outcomes[0]).toMatchObject({
      rowIndex: 2,
      status: 'failed',
      error: { code: 'INPUT_MISSING_PROMPT', lineNumber: 3 },
    });
  });

  it('returns the same job for a retried create with the same Idempotency-Key', async () => {
    const idemKey = uniqueName('create-once');
    const create = () =>
      api.app.inject({
        method: 'POST',
        url: '/v1/jobs',
        headers: { ...api.auth('alice'), 'idempotency-key': idemKey },
        payload: { provider: api.provider, model: 'model-a' },
      });
    const [a, b] = await Promise.all([create(), create()]);
    const c = await create();
    expect([a.statusCode, b.statusCode].sort()).toEqual([200, 201]);
    expect(b.json().id).toBe(a.json().id);
    expect(c.statusCode).toBe(200);
    expect(c.json().id).toBe(a.json().id);
    // Another tenant's key of the same name is another job.
    const bob = await api.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { ...api.auth('bob'), 'idempotency-key': idemKey },
      payload: { provider: api.provider, model: 'model-a' },
    });
    expect(bob.json().id).not.toBe(a.json().id);
  });

  // Regressions: a create that failed after its Idempotency-Key was taken left retries with 503 for
  // the key's 24 h; a replay with another body got the first job back as if it were the same.
  it('frees an Idempotency-Key whose create failed, and refuses the key with a different body', async () => {
    const idemKey = uniqueName('create-retry');
    const create = (model: string) =>
      api.app.inject({
        method: 'POST',
        url: '/v1/jobs',
        headers: { ...api.auth('alice'), 'idempotency-key': idemKey },
        payload: { provider: api.provider, model, metadata: { run: '7' } },
      });
    // The broker refuses the job's results topic once (an outage at the wrong moment).
    const kafka = api.kafka as { ensureTopics: typeof api.kafka.ensureTopics };
    const ensureTopics = kafka.ensureTopics;
    kafka.ensureTopics = () => Promise.reject(new Error('the broker is away'));
    try {
      expect((await create('model-a')).statusCode).toBe(500);
    } finally {
      kafka.ensureTopics = ensureTopics;
    }
    const retried = await create('model-a');
    expect(retried.statusCode).toBe(201);
    expect((await create('model-a')).json().id).toBe(retried.json().id);
    const other = await create('model-b');
    expect(other.statusCode).toBe(422);
    expect(other.json().error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(other.json().error.message).toContain(retried.json().id);
  });

  it("keeps tenants apart: 401 without a key, 404 for another tenant's job", async () => {
    const job = await createJob(api, {}, 'alice');
    expect((await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}` })).statusCode).toBe(401);
    expect(
      (
        await api.app.inject({
          method: 'GET',
          url: `/v1/jobs/${job.id}`,
          headers: { authorization: 'Bearer sk-wrong' },
        })
      ).statusCode,
    ).toBe(401);
    for (const [method, url] of [
      ['GET', `/v1/jobs/${job.id}`],
      ['DELETE', `/v1/jobs/${job.id}`],
      ['PUT', `/v1/jobs/${job.id}/input`],
      ['POST', `/v1/jobs/${job.id}/seal`],
    ] as const) {
      const res = await api.app.inject({
        method,
        url,
        headers:
          method === 'PUT'
            ? { ...api.auth('bob'), 'content-type': 'application/jsonl' }
            : method === 'POST'
              ? { ...api.auth('bob'), 'content-type': 'application/json' }
              : api.auth('bob'),
        payload: method === 'PUT' ? '{"prompt":"x"}' : method === 'POST' ? JSON.stringify({ total: 1 }) : undefined,
      });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.json().error.code).toBe('NOT_FOUND');
    }
    const bobsList = await api.app.inject({ method: 'GET', url: '/v1/jobs', headers: api.auth('bob') });
    expect(bobsList.json().jobs.map((j: { id: string }) => j.id)).not.toContain(job.id);
    const alicesList = await api.app.inject({ method: 'GET', url: '/v1/jobs', headers: api.auth('alice') });
    expect(alicesList.json().jobs.map((j: { id: string }) => j.id)).toContain(job.id);
  });

  it('cancels a job; a cancelled job takes no input', async () => {
    const job = await createJob(api);
    const del = await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(del.json().status).toBe('cancelled');
    const up = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: '{"prompt":"x"}',
    });
    expect(up.statusCode).toBe(409);
    expect(up.json().error.code).toBe('JOB_NOT_OPEN');
  });

  it('places concurrent jobs on different partitions while there are enough', async () => {
    const jobs = await Promise.all([1, 2, 3, 4].map(() => createJob(api)));
    const partitions = jobs.map((j) => j.kafka.partitions[0]);
    // Earlier tests' jobs load the 4 partitions too; these four still spread over all of them.
    expect(new Set(partitions).size).toBe(4);
  });

  it('serves its OpenAPI description at /docs', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    expect(Object.keys(res.json().paths)).toEqual(
      expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/input']),
    );
  });
});
