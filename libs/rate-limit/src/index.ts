import type { Redis } from 'ioredis';

/** The limits of one bucket: per minute, as providers state them. Absent: unlimited. */
export interface BucketLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  /** How much rate a bucket holds before it refuses. @default 1000 (one second of rate) */
  burstWindowMs?: number;
}

export interface AcquireRequest {
  /** provider:model:key-id; never the API key itself. */
  bucket: string;
  limits: BucketLimits;
  /** Tokens reserved: estimated prompt tokens + max_tokens. */
  tokens: number;
  /**
   * Of the limits, what this process may use on its own while Redis does not answer: its share of
   * the replicas (the dispatcher: the lane partitions it owns over all of them). @default 1
   */
  share?: number;
}

export type AcquireResult =
  | {
      granted: true;
      /**
       * Calls and tokens every replica has been granted on this bucket so far, this one included;
       * absent when the grant was local (Redis did not answer).
       */
      sent?: { requests: number; tokens: number };
    }
  | { granted: false; retryAfterMs: number; reason: 'requests' | 'tokens' | 'paused' };

export interface RateLimiterOptions {
  redis: Redis;
  /** @default "sluice:rl" */
  keyPrefix?: string;
  /** How long a Redis call may take before the local buckets answer instead. @default 1000 */
  timeoutMs?: number;
  /** How often Redis is asked (PING) while the local buckets answer. @default 1000 */
  retryMs?: number;
  /** @default Date.now */
  now?: () => number;
}

/**
 * What a replica learned of a bucket's limits, shared through Redis so that the other replicas,
 * and the next process after a restart, begin from it instead of from nothing: limits the
 * provider stated (in an answer's headers, or only in a 429's body), or the rate probing settled
 * at after a 429 where nothing states them. Per minute.
 */
export interface LearnedLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  by: 'headers' | 'body' | 'probing';
}

/** How long learned limits are kept after they were last shared: a provider may change them. */
const learnedTtlMs = 3_600_000;

/** Whether the limiter's buckets are Redis's (shared by every replica) or this process's own. */
export type LimiterState = 'shared' | 'local';

// GCRA on both dimensions at once, on Redis's clock, so every replica shares one bucket.
// KEYS[1] = bucket hash (fields r, t: theoretical arrival times in µs; ri, ti and rb, tb: the
// intervals and bursts they were set at, so that a bucket keeps its level across a change of
// pace; p: paused until µs;
// nr, nt: calls and tokens granted so far, which tell a provider's remaining-only headers apart
// from what every replica sent)
// ARGV = requests/min, tokens/min, burst ms, tokens
const acquireScript = `
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000000 + tonumber(now_s[2])
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local burst = tonumber(ARGV[3]) * 1000
local tokens = tonumber(ARGV[4])
-- One read of every field a grant needs: p, then r, ri, rb, then t, ti, tb.
local h = redis.call('HMGET', KEYS[1], 'p', 'r', 'ri', 'rb', 't', 'ti', 'tb')
local paused = tonumber(h[1] or '0')
if paused > now then return {0, paused - now, 'paused'} end
local function check(field, at, per_minute, cost)
  if per_minute <= 0 then return nil, 0 end
  local interval = 60000000 / per_minute
  local capacity = per_minute * burst / 60000000
  -- A wait for a 429's retry-after ends with the bucket empty: calls go on at the pace, not in a
  -- burst of the room saved meanwhile (after each short wait of a sliding window, such a burst
  -- met a 429 again).
  local tat = math.max(tonumber(h[at] or '0'), paused > 0 and paused + burst or 0)
  local was = tonumber(h[at + 1] or '0')
  local was_burst = tonumber(h[at + 2] or tostring(burst))
  -- At another pace than the arrival time was set at, the bucket keeps its level: the room it
  -- holds (or what is owed beyond it) in calls or tokens, not in time. A raised pace then neither
  -- waits out a debt counted at the old one nor frees a burst. Kept at once, refused or not.
  if was > 0 and (was ~= interval or was_burst ~= burst) and tat > now then
    tat = math.max(now, now + burst + (tat - now - was_burst) * interval / was)
    redis.call('HSET', KEYS[1], field, tat, field .. 'i', interval, field .. 'b', burst)
  end
  local base = math.max(tat, now)
  local need = math.min(cost, capacity) * interval
  local used = base - now
  if used + need > capacity * interval + 1 then return nil, used + need - capacity * interval end
  return base + cost * interval, 0, interval
end
local new_r, wait_r, int_r = check('r', 2, rpm, 1)
if rpm > 0 and new_r == nil then return {0, wait_r, 'requests'} end
local new_t, wait_t, int_t = check('t', 5, tpm, tokens)
if tpm > 0 and new_t == nil then return {0, wait_t, 'tokens'} end
if new_r then redis.call('HSET', KEYS[1], 'r', new_r, 'ri', int_r, 'rb', burst) end
if new_t then redis.call('HSET', KEYS[1], 't', new_t, 'ti', int_t, 'tb', burst) end
local sent_r = redis.call('HINCRBY', KEYS[1], 'nr', 1)
local sent_t = redis.call('HINCRBY', KEYS[1], 'nt', tokens)
redis.call('PEXPIRE', KEYS[1], 3600000)
return {1, 0, '', sent_r, sent_t}
`;

const pauseScript = `
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000000 + tonumber(now_s[2])
local until_us = now + tonumber(ARGV[1]) * 1000
local current = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if until_us > current then redis.call('HSET', KEYS[1], 'p', until_us) end
redis.call('PEXPIRE', KEYS[1], math.max(3600000, tonumber(ARGV[1]) + 60000))
return 1
`;

/**
 * Token buckets for requests and tokens per (provider, model, key), shared by every replica: one
 * Lua script admits a call only when both dimensions admit it, on Redis's clock. A 429's
 * retry-after pauses the bucket for every replica.
 *
 * When Redis does not answer (down, unreachable, slower than `timeoutMs`), buckets of this
 * process's own take over at its `share` of the limits, so that the replicas together still keep
 * to them. Calls then never wait on Redis: it is asked (PING) every `retryMs` aside from them, and
 * its buckets take back over once it answers.
 */
export class RateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private readonly local = new LocalBuckets();
  /** Whether the local buckets answer (Redis failed and has not answered a PING since). */
  private onLocal = false;
  private stateNow: LimiterState = 'shared';
  /** Why the local buckets took over last (Redis's error), for the caller's log. */
  lastError: Error | undefined;
  /** Times the local buckets took over. */
  fallbacks = 0;

  constructor(options: RateLimiterOptions) {
    this.redis = options.redis;
    this.prefix = options.keyPrefix ?? 'sluice:rl';
    this.timeoutMs = options.timeoutMs ?? 1_000;
    this.retryMs = options.retryMs ?? 1_000;
    this.now = options.now ?? Date.now;
    // ioredis keeps commands while it reconnects; the timeout, not the queue, decides here.
    this.redis.defineCommand('sluiceAcquire', { numberOfKeys: 1, lua: acquireScript });
    this.redis.defineCommand('sluicePause', { numberOfKeys: 1, lua: pauseScript });
  }

  get state(): LimiterState {
    return this.stateNow;
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    if (this.onLocal) return this.grantLocally(req);
    const ms = (v: number | undefined) => Math.max(0, Math.ceil(v ?? 0));
    let reply: [number, number, string, number?, number?];
    try {
      reply = (await this.withTimeout(
        (this.redis as unknown as Scripts).sluiceAcquire(
          `${this.prefix}:${req.bucket}`,
          req.limits.requestsPerMinute ?? 0,
          req.limits.tokensPerMinute ?? 0,
          req.limits.burstWindowMs ?? 1_000,
          ms(req.tokens),
        ),
      )) as typeof reply;
    } catch (err) {
      this.failed(err);
      return this.grantLocally(req);
    }
    this.stateNow = 'shared';
    const [ok, waitUs, reason, sentRequests, sentTokens] = reply;
    if (ok === 1) return { granted: true, sent: { requests: Number(sentRequests), tokens: Number(sentTokens) } };
    return {
      granted: false,
      retryAfterMs: Math.ceil(Number(waitUs) / 1_000),
      reason: reason as 'requests' | 'tokens' | 'paused',
    };
  }

  /**
   * Pauses a bucket for every replica (a provider's retry-after); never shortens a pause. The
   * local bucket is paused too, so the pause holds here if Redis does not answer.
   */
  async pause(bucket: string, ms: number): Promise<void> {
    this.local.pause(bucket, ms, this.now());
    if (this.onLocal) return;
    try {
      await this.withTimeout(
        (this.redis as unknown as Scripts).sluicePause(`${this.prefix}:${bucket}`, Math.max(0, Math.ceil(ms))),
      );
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * Shares what this replica learned of a bucket's limits (see LearnedLimits), for an hour after
   * the last share. Best effort: while Redis does not answer, nothing is shared.
   */
  async shareLearned(bucket: string, learned: LearnedLimits): Promise<void> {
    if (this.onLocal) return;
    const key = `${this.prefix}:${bucket}:learned`;
    const fields: Record<string, string> = { by: learned.by, at: String(this.now()) };
    if (learned.requestsPerMinute !== undefined) fields['rpm'] = String(learned.requestsPerMinute);
    if (learned.tokensPerMinute !== undefined) fields['tpm'] = String(learned.tokensPerMinute);
    try {
      // One replace: what another replica learned before (a dimension since gone) is not mixed in.
      await this.withTimeout(this.redis.multi().del(key).hset(key, fields).pexpire(key, learnedTtlMs).exec());
    } catch (err) {
      this.failed(err);
    }
  }

  /** What some replica last shared of a bucket's limits; undefined when nothing is (or Redis does not answer). */
  async learned(bucket: string): Promise<LearnedLimits | undefined> {
    if (this.onLocal) return undefined;
    let h: Record<string, string>;
    try {
      h = await this.withTimeout(this.redis.hgetall(`${this.prefix}:${bucket}:learned`));
    } catch (err) {
      this.failed(err);
      return undefined;
    }
    const by = h['by'];
    if (by !== 'headers' && by !== 'body' && by !== 'probing') return undefined;
    const perMinute = (v: string | undefined) => {
      const n = Number(v);
      return v !== undefined && Number.isFinite(n) && n > 0 ? n : undefined;
    };
    const out: LearnedLimits = { by };
    const rpm = perMinute(h['rpm']);
    const tpm = perMinute(h['tpm']);
    if (rpm !== undefined) out.requestsPerMinute = rpm;
    if (tpm !== undefined) out.tokensPerMinute = tpm;
    return rpm === undefined && tpm === undefined ? undefined : out;
  }

  private grantLocally(req: AcquireRequest): AcquireResult {
    return this.local.acquire(req, this.now());
  }

  private failed(err: unknown): void {
    this.lastError = err instanceof Error ? err : new Error(String(err));
    if (this.stateNow === 'shared') this.fallbacks++;
    this.stateNow = 'local';
    if (!this.onLocal) {
      this.onLocal = true;
      void this.probe();
    }
  }

  /** PINGs Redis every `retryMs` until it answers; then calls go to its buckets again. */
  private async probe(): Promise<void> {
    for (;;) {
      await new Promise((r) => setTimeout(r, this.retryMs).unref());
      if (this.redis.status === 'end') return; // disconnected for good: stay local
      try {
        await this.withTimeout(this.redis.ping());
        this.onLocal = false;
        return;
      } catch (err) {
        this.lastError = err instanceof Error ? err : new Error(String(err));
      }
    }
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      timer.unref();
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

interface Scripts {
  sluiceAcquire(key: string, rpm: number, tpm: number, burstMs: number, tokens: number): Promise<unknown>;
  sluicePause(key: string, ms: number): Promise<unknown>;
}

/**
 * The same two-dimension GCRA as the Lua script, in this process, at a share of the limits: what
 * paces a replica while Redis does not answer. Times in ms on this process's clock.
 */
export class LocalBuckets {
  /** Arrival times r, t (ms), the intervals ri, ti and bursts rb, tb they were set at, paused until p. */
  private readonly buckets = new Map<
    string,
    { r: number; t: number; ri: number; ti: number; rb: number; tb: number; p: number }
  >();

  acquire(req: AcquireRequest, now: number): AcquireResult {
    let b = this.buckets.get(req.bucket);
    if (!b) {
      b = { r: 0, t: 0, ri: 0, ti: 0, rb: 0, tb: 0, p: 0 };
      this.buckets.set(req.bucket, b);
    }
    if (b.p > now) return { granted: false, retryAfterMs: Math.ceil(b.p - now), reason: 'paused' };
    const share = Math.min(1, Math.max(0.01, req.share ?? 1));
    const burstMs = req.limits.burstWindowMs ?? 1_000;
    const bucket = b;
    const check = (field: 'r' | 't', perMinute: number | undefined, cost: number) => {
      if (!perMinute || perMinute <= 0) return { next: undefined, wait: 0, interval: 0 };
      const rate = perMinute * share;
      const interval = 60_000 / rate;
      const capacity = (rate * burstMs) / 60_000;
      // At another pace, the bucket keeps its level in calls or tokens (see the Lua script).
      const [at, bt] = field === 'r' ? (['ri', 'rb'] as const) : (['ti', 'tb'] as const);
      // Empty when a pause ends (see the Lua script).
      if (bucket.p > 0) bucket[field] = Math.max(bucket[field], bucket.p + burstMs);
      if (bucket[at] > 0 && (bucket[at] !== interval || bucket[bt] !== burstMs) && bucket[field] > now) {
        bucket[field] = Math.max(now, now + burstMs + ((bucket[field] - now - bucket[bt]) * interval) / bucket[at]);
        bucket[at] = interval;
        bucket[bt] = burstMs;
      }
      const base = Math.max(bucket[field], now);
      const used = base - now;
      const need = Math.min(cost, capacity) * interval;
      if (used + need > capacity * interval + 0.001)
        return { next: undefined, wait: used + need - capacity * interval, interval };
      return { next: base + cost * interval, wait: 0, interval };
    };
    const r = check('r', req.limits.requestsPerMinute, 1);
    if (r.next === undefined && r.wait > 0)
      return { granted: false, retryAfterMs: Math.ceil(r.wait), reason: 'requests' };
    const t = check('t', req.limits.tokensPerMinute, Math.max(0, Math.ceil(req.tokens)));
    if (t.next === undefined && t.wait > 0)
      return { granted: false, retryAfterMs: Math.ceil(t.wait), reason: 'tokens' };
    if (r.next !== undefined) [b.r, b.ri, b.rb] = [r.next, r.interval, burstMs];
    if (t.next !== undefined) [b.t, b.ti, b.tb] = [t.next, t.interval, burstMs];
    return { granted: true };
  }

  pause(bucket: string, ms: number, now: number): void {
    const b = this.buckets.get(bucket) ?? { r: 0, t: 0, ri: 0, ti: 0, rb: 0, tb: 0, p: 0 };
    b.p = Math.max(b.p, now + Math.max(0, ms));
    this.buckets.set(bucket, b);
  }
}
export {
  LimitLearner,
  type LimitLearnerOptions,
  type LearnerMode,
  type RemainingLimits,
  type SendStamp,
  type StatedLimits,
} from './learner.js';
export { RefillEstimator } from './refill.js';
export { InFlightCap } from './in-flight.js';
export { charsCounter, loadTokenCounter, tokenizerNames, type TokenCounter, type TokenizerName } from './tokenizer.js';
