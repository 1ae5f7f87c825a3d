import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys } from './keys.js';

/**
 * A job's live counts: prompts a dispatcher holds now (waiting for a grant or at the provider),
 * one field per process, and prompts waiting in a delay topic, one field every process adds to
 * (a dispatcher that delays a prompt) and takes from (one that reads it back from the lane).
 */
export const liveKey = redisKeys.live;
const inFlightPrefix = 'in_flight:';
const retryingField = 'retrying';
/** A process's in-flight figure counts this long after it was written: one that died stops counting. */
const staleMs = 10_000;
/** A job's live counts are kept this long after their last change. */
const keyTtlMs = 3_600_000;

export interface LiveCounts {
  inFlight: number;
  retrying: number;
}

/**
 * One process's side of the live counts, kept in memory and written each `flushMs` (one Redis
 * round trip for every job that changed): a process with prompts of a job in hand writes its
 * figure each time, so that it stays fresh; one that has none left writes 0 once and stops.
 */
export class LiveCountsWriter {
  private readonly field = `${inFlightPrefix}${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly inFlight = new Map<string, number>();
  private readonly retrying = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    flushMs = 1_000,
  ) {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }

  /** A prompt of `jobId` is in hand: waiting for its turn, or at the provider. */
  started(jobId: string): void {
    this.inFlight.set(jobId, (this.inFlight.get(jobId) ?? 0) + 1);
  }

  /** A prompt of `jobId` left the process's hands: answered, delayed, failed or passed on. */
  ended(jobId: string): void {
    this.inFlight.set(jobId, Math.max(0, (this.inFlight.get(jobId) ?? 0) - 1));
  }

  /** A prompt of `jobId` went to a delay topic. */
  delayed(jobId: string): void {
    this.retrying.set(jobId, (this.retrying.get(jobId) ?? 0) + 1);
  }

  /** A prompt of `jobId` came back from a delay topic. */
  returned(jobId: string): void {
    this.retrying.set(jobId, (this.retrying.get(jobId) ?? 0) - 1);
  }

  async flush(): Promise<void> {
    const at = Date.now();
    const m = this.redis.pipeline();
    let writes = 0;
    for (const [jobId, n] of this.inFlight) {
      m.hset(liveKey(jobId), this.field, `${n}:${at}`).pexpire(liveKey(jobId), keyTtlMs);
      writes++;
      if (n === 0) this.inFlight.delete(jobId);
    }
    for (const [jobId, delta] of this.retrying) {
      if (delta !== 0) m.hincrby(liveKey(jobId), retryingField, delta).pexpire(liveKey(jobId), keyTtlMs);
      writes++;
    }
    this.retrying.clear();
    if (writes > 0) await m.exec().catch(() => undefined); // a figure for the API: the next flush writes anew
  }

  /** Writes the process's last figures (none in hand) and stops. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const jobId of this.inFlight.keys()) this.inFlight.set(jobId, 0);
    await this.flush();
  }
}

/**
 * A job's live counts as the processes last wrote them: in flight, the figures written within
 * the last 10 s; retrying, never below 0 (a prompt read back twice after a rebalance is taken off
 * twice).
 */
export async function readLiveCounts(redis: Redis, jobId: string, now = Date.now()): Promise<LiveCounts> {
  const h = await redis.hgetall(liveKey(jobId));
  let inFlight = 0;
  for (const [field, value] of Object.entries(h)) {
    if (!field.startsWith(inFlightPrefix)) continue;
    const [n, at] = value.split(':').map(Number);
    if (now - (at ?? 0) <= staleMs) inFlight += n ?? 0;
  }
  return { inFlight, retrying: Math.max(0, Number(h[retryingField] ?? 0)) };
}
