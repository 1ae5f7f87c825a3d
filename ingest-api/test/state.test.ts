import { waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createTestApi, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await createTestApi({ SLUICE_MAX_UPLOAD_BYTES: '100000' });
});
afterAll(() => api?.close());

describe('job state', () => {
  it('rebuilds the Redis view from sluice.jobs when it is empty', async () => {
    const job = await createJob(api, { metadata: { owner: 'desk-7' } });
    await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: '{"prompt":"a"}\n{"prompt":"b"}\n{"oops":true}\n',
    });
    // Lose the view: the job is gone from Redis. Until it is rebuilt, a job the view does not
    // have is not said not to exist: 503, retry.
    const notes = await api.redis.keys('sluice:view:rebuild:*');
    await api.redis.del(`sluice:job:${job.id}`, 'sluice:view:ready', ...notes);
    const meanwhile = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect([meanwhile.statusCode, meanwhile.json().error.code]).toEqual([503, 'UNAVAILABLE']);

    const admin = api.kafka.admin();
    await admin.connect();
    const readGroups = async () =>
      (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith('sluice-ingest-read-'));
    const before = new Set(await readGroups());
    expect(await api.jobs.rebuildView()).toBeGreaterThan(0);
    // The read's consumer group is gone after it (they piled up, one per rebuild, showing lag).
    // Other tests' APIs read too, at the same time: their groups go as well once their reads end.
    let left: string[] = [];
    await waitFor(
      'no read group left behind',
      async () => {
        left = (await readGroups()).filter((g) => !before.has(g));
        return left.length === 0 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    ).catch(() => undefined);
    expect(left).toEqual([]);
    await admin.disconnect();
    const got = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      status: 'sealed',
      metadata: { owner: 'desk-7' },
      counts: { total: 3, queued: 2, invalid: 1 },
    });
  });

  // Regression: after Redis lost its data, every job read 404 until the API was restarted.
  it('rebuilds the view by itself when Redis loses it while the API runs', async () => {
    const job = await createJob(api);
    // As Redis losing its data: the view's keys and any rebuild's note of its progress.
    const notes = await api.redis.keys('sluice:view:rebuild:*');
    await api.redis.del(`sluice:job:${job.id}`, 'sluice:view:ready', ...notes);
    await waitFor(
      'the job readable again',
      async () =>
        (await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') })).statusCode ===
        200
          ? true
          : undefined,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(await api.redis.exists('sluice:view:ready')).toBe(1);
  }, 60_000);

  // Regression: a job never sealed stayed open for ever, holding its topic and its placement.
  it('cancels a job left open past SLUICE_OPEN_JOB_TTL_MS as expired, and leaves sealed and recent ones', async () => {
    const stale = await createJob(api, { source: 'kafka' });
    const recent = await createJob(api, { source: 'kafka' });
    const sealed = await createJob(api);
    await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${sealed.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: '{"prompt":"a"}\n',
    });
    // As if the stale job had been left open for a week (its last change 8 days ago).
    const raw = JSON.parse((await api.redis.get(`sluice:job:${stale.id}`))!) as { updatedAt: number };
    await api.redis.set(`sluice:job:${stale.id}`, JSON.stringify({ ...raw, updatedAt: Date.now() - 8 * 86_400_000 }));
    const expired = await api.jobs.expireOpenJobs();
    expect(expired).toContain(stale.id);
    expect(expired).not.toContain(recent.id);
    expect(expired).not.toContain(sealed.id);
    const got = (
      await api.app.inject({ method: 'GET', url: `/v1/jobs/${stale.id}`, headers: api.auth('alice') })
    ).json();
    expect(got.status).toBe('cancelled');
    expect(got.statusReason).toMatch(/^expired: open 168 h with no input and no seal/);
    // What sluice.jobs says (the view rebuilt from it keeps the reason).
    await api.redis.del(`sluice:job:${stale.id}`);
    await api.jobs.rebuildView();
    const rebuilt = (
      await api.app.inject({ method: 'GET', url: `/v1/jobs/${stale.id}`, headers: api.auth('alice') })
    ).json();
    expect([rebuilt.status, rebuilt.statusReason]).toEqual([got.status, got.statusReason]);
    for (const id of [recent.id, sealed.id])
      expect(
        (await api.app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: api.auth('alice') })).json().status,
      ).not.toBe('cancelled');
  }, 60_000);

  it('lets Kafka-fed jobs be sealed with their total, and refuses uploads to them', async () => {
    const job = await createJob(api, { source: 'kafka' });
    // Regression: a producer could not learn the tenant its records must name.
    expect(job.kafka.tenant).toBe('alice');
    const up = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: '{"prompt":"a"}',
    });
    expect(up.statusCode).toBe(409);
    const seal = await api.app.inject({
      method: 'POST',
      url: `/v1/jobs/${job.id}/seal`,
      headers: api.auth('alice'),
      payload: { total: 1234 },
    });
    expect(seal.json()).toMatchObject({ status: 'sealed', counts: { total: 1234 } });
    const again = await api.app.inject({
      method: 'POST',
      url: `/v1/jobs/${job.id}/seal`,
      headers: api.auth('alice'),
      payload: { total: 1 },
    });
    expect(again.statusCode).toBe(409);
  });

  it('refuses an upload over the size limit with 413, keeping what was committed', async () => {
    const job = await createJob(api);
    const big = Array.from({ length: 5_000 }, (_, i) => JSON.stringify({ prompt: `row ${i} ${'x'.repeat(20)}` })).join(
      '\n',
    );
    const res = await api.app.inject({
      method: 'PUT',
      url: `/v1/jobs/${job.id}/input`,
      headers: { ...api.auth('alice'), 'content-type': 'application/jsonl' },
      payload: big,
    });
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toMatchObject({ code: 'UPLOAD_TOO_LARGE', hint: 'split the input into several jobs' });
    const got = await api.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: api.auth('alice') });
    expect(got.json().status).toBe('open');
    expect(got.json().counts.queued % 1_000).toBe(0); // whole chunks only
  });
});
