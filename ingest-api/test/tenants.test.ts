import { webhookSecretFor } from '@sluice/tenants';
import { uniqueName } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApi, type TestApi } from './helpers.js';

/** Two tenants of this test only (their jobs and quotas are theirs alone), with `policies`. */
async function apiFor(policies: (t: { alice: string; bob: string }) => Record<string, unknown>, env = {}, o = {}) {
  const tenantNames = { alice: uniqueName('alice'), bob: uniqueName('bob') };
  const api = await createTestApi(
    { SLUICE_TENANTS: JSON.stringify(policies(tenantNames)), SLUICE_WEBHOOK_SECRET: 'platform-secret', ...env },
    { tenantNames, ...o },
  );
  return { api, tenantNames };
}

const create = (api: TestApi, tenant: 'alice' | 'bob', body: Record<string, unknown> = {}, headers = {}) =>
  api.app.inject({
    method: 'POST',
    url: '/v1/jobs',
    headers: { ...api.auth(tenant), ...headers },
    payload: { provider: api.provider, model: 'model-a', ...body },
  });

const upload = (api: TestApi, jobId: string, payload: string) =>
  api.app.inject({
    method: 'PUT',
    url: `/v1/jobs/${jobId}/input`,
    headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
    payload,
  });

const rows = (n: number, bytes = 20) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `r${i}`, prompt: `p${i} `.padEnd(bytes, 'x') })).join(
    '\n',
  );

describe('what a tenant may name in notifications', () => {
  let api: TestApi;
  let names: { alice: string; bob: string };
  beforeAll(async () => {
    ({ api, tenantNames: names } = await apiFor((t) => ({
      [t.alice]: { pubsubTopics: ['alice-*', 'projects/p/topics/shared-done'] },
    })));
  });
  afterAll(() => api?.close());

  it("announces only on a topic its allow-list names: another tenant's topic is refused (403), with what to do", async () => {
    expect((await create(api, 'alice', { notifications: { pubsubTopic: 'alice-done' } })).statusCode).toBe(201);
    expect((await create(api, 'alice', { notifications: { pubsubTopic: 'shared-done' } })).statusCode).toBe(201);
    const refused = await create(api, 'alice', { notifications: { pubsubTopic: 'bob-done' } });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error).toMatchObject({
      code: 'TOPIC_NOT_ALLOWED',
      message: `tenant ${names.alice} may not announce on Pub/Sub topic "bob-done"`,
      topic: 'bob-done',
    });
    expect(refused.json().error.hint).toContain(`SLUICE_TENANTS.${names.alice}.pubsubTopics`);
    // bob has no topics of his own: alice's is refused, the platform's (no topic named) is his.
    expect((await create(api, 'bob', { notifications: { pubsubTopic: 'alice-done' } })).statusCode).toBe(403);
    expect((await create(api, 'bob')).statusCode).toBe(201);
  });

  it('refuses webhooks to this machine, private networks and the metadata server by default', async () => {
    for (const url of [
      'http://127.0.0.1:8080/hook',
      'http://localhost/hook',
      'http://169.254.169.254/computeMetadata/v1/',
      'http://10.0.0.7/hook',
      'http://[::1]/hook',
    ]) {
      const res = await create(api, 'alice', { notifications: { webhookUrl: url } });
      expect(res.statusCode, url).toBe(403);
      expect(res.json().error.code, url).toBe('WEBHOOK_NOT_ALLOWED');
      expect(res.json().error.message, url).toMatch(/loopback, private or link-local address/);
    }
    expect(
      (await create(api, 'alice', { notifications: { webhookUrl: 'https://hooks.example.com/sluice' } })).statusCode,
    ).toBe(201);
  });

  it("serves each tenant its own webhook signing key, derived from the platform's secret", async () => {
    const a = await api.app.inject({ method: 'GET', url: '/v1/webhook-secret', headers: api.auth('alice') });
    const b = await api.app.inject({ method: 'GET', url: '/v1/webhook-secret', headers: api.auth('bob') });
    expect(a.json()).toEqual({
      tenant: names.alice,
      secret: webhookSecretFor('platform-secret', names.alice),
      algorithm: 'HMAC-SHA256',
    });
    expect(b.json().secret).toBe(webhookSecretFor('platform-secret', names.bob));
    expect(b.json().secret).not.toBe(a.json().secret);
    expect((await api.app.inject({ method: 'GET', url: '/v1/webhook-secret' })).statusCode).toBe(401);
  });
});

describe('webhooks where the operator allows private addresses, or sends none', () => {
  it('takes a private webhook for a tenant allowed them, and refuses every webhook without a platform secret', async () => {
    const { api } = await apiFor((t) => ({ [t.alice]: { privateWebhooks: true } }));
    try {
      const hook = { notifications: { webhookUrl: 'http://localhost:9000/hook' } };
      expect((await create(api, 'alice', hook)).statusCode).toBe(201);
      expect((await create(api, 'bob', hook)).statusCode).toBe(403);
    } finally {
      await api.close();
    }
    const { api: none } = await apiFor(() => ({}), { SLUICE_WEBHOOK_SECRET: '' });
    try {
      const res = await create(none, 'alice', { notifications: { webhookUrl: 'https://hooks.example.com/x' } });
      expect([res.statusCode, res.json().error.code]).toEqual([403, 'WEBHOOK_NOT_ALLOWED']);
      expect(res.json().error.message).toMatch(/sends no webhooks/);
    } finally {
      await none.close();
    }
  });
});

describe('quotas', () => {
  it('refuses a job past maxOpenJobs with 429 and Retry-After; an ended job frees its place; a replay is not refused', async () => {
    const { api, tenantNames } = await apiFor((t) => ({ [t.alice]: { maxOpenJobs: 2 } }));
    try {
      const first = await create(api, 'alice', {}, { 'idempotency-key': 'k1' });
      expect((await create(api, 'alice')).statusCode).toBe(201);
      const refused = await create(api, 'alice');
      expect(refused.statusCode).toBe(429);
      expect(refused.headers['retry-after']).toBe('60');
      expect(refused.json().error).toMatchObject({ code: 'QUOTA_EXCEEDED', quota: 'maxOpenJobs', limit: 2, used: 2 });
      expect(refused.json().error.message).toBe(`tenant ${tenantNames.alice} has 2 jobs not yet ended, its limit is 2`);
      // The same create again (Idempotency-Key) gets its job back, whatever the quota.
      const replay = await create(api, 'alice', {}, { 'idempotency-key': 'k1' });
      expect([replay.statusCode, replay.json().id]).toEqual([200, first.json().id]);
      // bob has his own quota.
      expect((await create(api, 'bob')).statusCode).toBe(201);
      const quotas = await api.app.inject({ method: 'GET', url: '/v1/quotas', headers: api.auth('alice') });
      expect(quotas.json()).toMatchObject({ tenant: tenantNames.alice, maxOpenJobs: 2, openJobs: 2 });
      await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${first.json().id}`, headers: api.auth('alice') });
      expect((await create(api, 'alice')).statusCode).toBe(201);
    } finally {
      await api.close();
    }
  });

  it('stops an upload at maxOpenRows with the rows before committed (429); sent again once room is free, it resumes after them', async () => {
    const { api } = await apiFor((t) => ({ [t.alice]: { maxOpenRows: 10 } }));
    try {
      const a = (await create(api, 'alice')).json().id as string;
      expect((await upload(api, a, rows(6))).json()).toMatchObject({ status: 'sealed', total: 6 });
      const b = (await create(api, 'alice')).json().id as string;
      const input = rows(8);
      const stopped = await upload(api, b, input);
      expect(stopped.statusCode).toBe(429);
      expect(stopped.headers['retry-after']).toBe('60');
      expect(stopped.json().error).toMatchObject({
        code: 'QUOTA_EXCEEDED',
        quota: 'maxOpenRows',
        limit: 10,
        committedRows: 4,
      });
      const quotas = await api.app.inject({ method: 'GET', url: '/v1/quotas', headers: api.auth('alice') });
      expect(quotas.json()).toMatchObject({ openJobs: 2, openRows: 10, maxOpenRows: 10 });
      // Full: a new upload is refused before it reads a row.
      const c = (await create(api, 'alice')).json().id as string;
      const none = await upload(api, c, rows(1));
      expect([none.statusCode, none.json().error.committedRows]).toEqual([429, 0]);
      await api.app.inject({ method: 'DELETE', url: `/v1/jobs/${a}`, headers: api.auth('alice') });
      const resumed = await upload(api, b, input);
      expect(resumed.statusCode, resumed.body).toBe(200);
      expect(resumed.json()).toMatchObject({ status: 'sealed', total: 8, resumedFrom: 4, accepted: 4 });
    } finally {
      await api.close();
    }
  });

  it('slows an upload to uploadBytesPerMinute, and refuses another while the window is spent', async () => {
    // 1 MiB a 2 s window (30 MiB a minute, counted over 2 s here).
    const { api } = await apiFor(
      (t) => ({ [t.alice]: { uploadBytesPerMinute: 30 * 1024 * 1024 } }),
      {},
      {
        uploadRateWindowMs: 2_000,
      },
    );
    try {
      const job = (await create(api, 'alice')).json().id as string;
      const next = (await create(api, 'alice')).json().id as string;
      const input = rows(3_000, 1_100); // about 3.3 MiB
      const started = Date.now();
      const big = upload(api, job, input);
      // The first MiB went at once; the next waits for the next window: meanwhile another upload
      // of the tenant's is refused before it reads a row.
      await new Promise((r) => setTimeout(r, 700));
      const refused = await upload(api, next, rows(1));
      expect(refused.statusCode).toBe(429);
      expect(refused.json().error).toMatchObject({ code: 'QUOTA_EXCEEDED', quota: 'uploadBytesPerMinute' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(2);
      const res = await big;
      const tookMs = Date.now() - started;
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ total: 3_000, accepted: 3_000 });
      // A MiB a window: three MiB after the first take three more windows at least.
      expect(tookMs).toBeGreaterThanOrEqual(3 * 2_000 - 500);
    } finally {
      await api.close();
    }
  });
});
