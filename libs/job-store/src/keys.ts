/**
 * Every Redis key Sluice's processes share, in one place (docs/redis.md says what each holds and
 * what happens when Redis loses it). The rate limiter's buckets are its own (`sluice:rl:*`,
 * libs/rate-limit).
 */
export const redisKeys = {
  /** A job as the API shows it (JSON of the Job record). */
  job: (jobId: string) => `sluice:job:${jobId}`,
  /** Outcomes the sink has written for a job: succeeded, failed, written. */
  counts: (jobId: string) => `sluice:job:${jobId}:counts`,
  /** Prompts in the dispatchers' hands and waiting in delay topics (LiveCountsWriter). */
  live: (jobId: string) => `sluice:job:${jobId}:live`,
  /** Marks that a job's placement load was given back (once, whoever ends the job). */
  released: (jobId: string) => `sluice:job:${jobId}:released`,
  /** A tenant's jobs by creation time. */
  tenantJobs: (tenant: string) => `sluice:tenant:${tenant}:jobs`,
  /** A tenant's jobs not yet ended: what its quotas count. */
  tenantOpen: (tenant: string) => `sluice:tenant:${tenant}:open`,
  /** The view is whole (set by a rebuild from sluice.jobs). */
  viewReady: 'sluice:view:ready',
  /** A rebuild's note that it is in progress. */
  viewRebuild: (token: string) => `sluice:view:rebuild:${token}`,
  /** A lane's placement load per partition. */
  laneLoad: (provider: string) => `sluice:lane:${provider}:load`,
  /** A lane bucket's note that it paces under half its stated limit. */
  heldBack: (provider: string, bucket: string) => `sluice:lane:${provider}:held:${bucket}`,
  /** A create's Idempotency-Key, for 24 h. */
  idempotency: (tenant: string, key: string) => `sluice:idem:${tenant}:${key}`,
  /** The lock an upload holds on its job. */
  uploadLock: (jobId: string) => `sluice:upload:${jobId}`,
  /** A chunk of an upload in flight (its commit not yet seen in the view). */
  uploadPending: (jobId: string) => `sluice:upload:${jobId}:pending`,
  /** Dead letters already sent on again by `sluice dead-letters --redrive`. */
  redrivenLetters: 'sluice:dead-letters:redriven',
  /** Prefix of the tenants' upload byte windows (rate-limiter-flexible adds the tenant). */
  uploadBytes: (perMinute: number, windowMs: number) => `sluice:quota:upload-bytes:${perMinute}:${windowMs}`,
} as const;
