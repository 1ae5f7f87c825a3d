import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SluiceError } from '@sluice/errors';
import { redisKeys, type JobView } from '@sluice/job-store';
import type { Job } from '@sluice/schemas';

/** A create's claim on its Idempotency-Key: the job made under it already, or the key now its. */
export type Claim = { existing: Job } | { release: () => Promise<void> };

/** How long a key names its job. */
const keySeconds = 86_400;

/** Deletes KEYS[1] if it still holds ARGV[1] (ours, not a later claim). */
const deleteIfScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Idempotency-Keys of job creation, per tenant, for 24 h: a replay of the same request gets its
 * job back; a replay with another body is refused; a create that fails before its job exists
 * gives its key back (a retry got 503 for the key's 24 h).
 */
export class Idempotency {
  constructor(
    private readonly redis: Redis,
    private readonly view: JobView,
  ) {}

  /** Claims `key` for the job `jobId` that `request` is to make (nothing to claim without a key). */
  async claim(tenant: string, key: string | undefined, request: unknown, jobId: string): Promise<Claim> {
    if (key === undefined) return { release: async () => undefined };
    const redisKey = redisKeys.idempotency(tenant, key);
    // The key names the job and what was asked for it: a replay with another body is refused.
    const print = requestFingerprint(request);
    const claim = `${jobId} ${print}`;
    if ((await this.redis.set(redisKey, claim, 'EX', keySeconds, 'NX')) === 'OK')
      return { release: () => this.redis.eval(deleteIfScript, 1, redisKey, claim).then(() => undefined) };
    const [existing = '', theirs] = ((await this.redis.get(redisKey)) ?? '').split(' ');
    if (theirs !== undefined && theirs !== print) {
      throw new SluiceError(
        'IDEMPOTENCY_KEY_REUSED',
        `Idempotency-Key "${key}" was used for job ${existing} with a different request`,
        { hint: 'send the same body to get that job back, or use a new key for a new job' },
      );
    }
    // A concurrent create with the same key may still be writing its job.
    for (let i = 0; i < 100; i++) {
      const job = await this.view.get(existing);
      if (job) return { existing: job };
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new SluiceError('UNAVAILABLE', 'a job with this Idempotency-Key is being created; retry', {
      retryable: true,
    });
  }

  /** Names `job` under its key again (a view rebuilt after Redis lost its data); its body is not known. */
  async restore(job: Job): Promise<void> {
    if (!job.idempotencyKey) return;
    await this.redis.set(redisKeys.idempotency(job.tenant, job.idempotencyKey), job.jobId, 'EX', keySeconds, 'NX');
  }
}

/** A digest of a request, its keys in a fixed order: the same request, the same digest. */
export function requestFingerprint(input: unknown): string {
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, stable((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(stable(input)))
    .digest('hex')
    .slice(0, 32);
}
