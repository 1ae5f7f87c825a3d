import type { Redis } from 'ioredis';
import { redisKeys } from './keys.js';

/**
 * A job's outcomes as the sink has written them to its files, both sides of the hash in one
 * place: the sink writes every field, the job view reads them. A field read here that nothing
 * writes would not compile.
 */
export interface SinkCounts {
  /** Prompts with a result in a committed part. */
  succeeded: number;
  /** Prompts with an error in a committed part (failed, invalid and cancelled). */
  failed: number;
  /** Rows in committed parts, of any kind. */
  written: number;
}

/** The sink's side: after each committed part. */
export async function writeSinkCounts(redis: Redis, jobId: string, counts: SinkCounts): Promise<void> {
  await redis.hset(redisKeys.counts(jobId), { ...counts });
}

/** The view's side: zeros before the sink has written anything. */
export async function readSinkCounts(redis: Redis, jobId: string): Promise<SinkCounts> {
  const h = await redis.hgetall(redisKeys.counts(jobId));
  const n = (k: keyof SinkCounts) => Number(h[k] ?? 0);
  return { succeeded: n('succeeded'), failed: n('failed'), written: n('written') };
}
