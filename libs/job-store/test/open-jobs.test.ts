import { Redis } from 'ioredis';
import type { Job } from '@sluice/schemas';
import { stackSettings, uniqueName } from '@sluice/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { JobView } from '../src/index.js';

const redis = new Redis(stackSettings().redisUrl, { maxRetriesPerRequest: 2 });
afterAll(() => redis.quit());

const job = (tenant: string, jobId: string, status: string, updatedAt = Date.now()): Job => ({
  jobId,
  tenant,
  status,
  provider: 'openai',
  model: 'gpt-4o-mini',
  priority: 0,
  source: 'http',
  parameters: '{}',
  promptTemplate: null,
  metadata: {},
  notifications: '{}',
  idempotencyKey: null,
  laneTopic: 'sluice.requests.openai',
  partitions: [0],
  resultsTopic: `sluice.results.${jobId}`,
  accepted: 0,
  invalid: 0,
  total: null,
  createdAt: 1,
  updatedAt,
  finalizedAt: null,
  manifestUri: null,
  inputDigest: null,
  statusReason: null,
});

describe("a tenant's jobs not yet ended (real Redis)", () => {
  it('follows every way the view is written: put, putUnlessEnded, putIfNewer (a rebuild)', async () => {
    const view = new JobView(redis);
    const t = uniqueName('tenant');
    const ids = async () => (await view.openJobs(t)).map((j) => j.jobId).sort();
    await view.put(job(t, 'job_a', 'open'));
    await view.putUnlessEnded(job(t, 'job_b', 'sealed'));
    await view.putIfNewer(job(t, 'job_c', 'open'));
    expect(await ids()).toEqual(['job_a', 'job_b', 'job_c']);
    await view.put(job(t, 'job_a', 'completed'));
    await view.putIfNewer(job(t, 'job_c', 'cancelled', Date.now() + 1_000));
    expect(await ids()).toEqual(['job_b']);
    // An ended job is not put back to open by a late chunk, nor counted again.
    expect(await view.putUnlessEnded(job(t, 'job_a', 'open'))).toBe(false);
    expect(await ids()).toEqual(['job_b']);
    // Redis lost the set (not the jobs): a rebuild's writes make it again.
    await redis.del(`sluice:tenant:${t}:open`);
    expect(await ids()).toEqual([]);
    await view.putIfNewer(job(t, 'job_b', 'sealed'));
    expect(await ids()).toEqual(['job_b']);
  });
});
