import type { Redis } from 'ioredis';
import type { BucketLimits, LearnedLimits } from './types.js';

export type { BucketLimits, LearnedLimits };

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
  /**
   * What the other calls of a lease are expected to reserve each (see RateLimiterOptions.leaseMs).
   * @default tokens
   */
  tokensPerCall?: number;
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
  /**
   * At a pace of more than one call in this many ms, one Redis call books the calls of this many
   * ms of the pace (a lease, at most `maxLeaseCalls`): this process hands them out at the bucket's
   * own spacing, and gives back what it did not use within `leaseTtlMs`. Fewer round trips at a
   * high pace (one a call cost a dispatcher about an eighth of its CPU); at a low pace, a lease is
   * one call, as without one. 0: one call per Redis call. @default 25
   */
  leaseMs?: number;
  /** @default 32 */
  maxLeaseCalls?: number;
  /** @default 100 */
  leaseTtlMs?: number;
  /** @default Date.now */
  now?: () => number;
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
// ARGV = requests/min, tokens/min, burst ms, tokens; then the lease: calls and tokens booked when
// the first call is granted (at least 1 and tokens), and calls and tokens of an earlier lease given
// back (unused), taken off the arrival times and the counts before anything else.
const acquireScript = `
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000000 + tonumber(now_s[2])
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local burst = tonumber(ARGV[3]) * 1000
local tokens = tonumber(ARGV[4])
local lease_calls = tonumber(ARGV[5])
local lease_tokens = tonumber(ARGV[6])
local back_calls = tonumber(ARGV[7])
local back_tokens = tonumber(ARGV[8])
if back_calls > 0 or back_tokens > 0 then
  local g = redis.call('HMGET', KEYS[1], 'r', 'ri', 't', 'ti')
  if g[1] and g[2] then redis.call('HSET', KEYS[1], 'r', tonumber(g[1]) - back_calls * tonumber(g[2])) end
  if g[3] and g[4] then redis.call('HSET', KEYS[1], 't', tonumber(g[3]) - back_tokens * tonumber(g[4])) end
  -- (HINCRBY takes whole numbers only; Lua 5.1 writes minus zero as -0)
  if back_calls > 0 then redis.call('HINCRBY', KEYS[1], 'nr', -back_calls) end
  if back_tokens > 0 then redis.call('HINCRBY', KEYS[1], 'nt', -back_tokens) end
end
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
  return base, 0, interval
end
-- The first call must fit now; the lease's others are booked behind it, at the bucket's spacing.
local base_r, wait_r, int_r = check('r', 2, rpm, 1)
if rpm > 0 and base_r == nil then return {0, wait_r, 'requests'} end
local base_t, wait_t, int_t = check('t', 5, tpm, tokens)
if tpm > 0 and base_t == nil then return {0, wait_t, 'tokens'} end
if base_r then redis.call('HSET', KEYS[1], 'r', base_r + lease_calls * int_r, 'ri', int_r, 'rb', burst) end
if base_t then redis.call('HSET', KEYS[1], 't', base_t + lease_tokens * int_t, 'ti', int_t, 'tb', burst) end
local sent_r = redis.call('HINCRBY', KEYS[1], 'nr', lease_calls)
local sent_t = redis.call('HINCRBY', KEYS[1], 'nt', lease_tokens)
redis.call('PEXPIRE', KEYS[1], 3600000)
return {1, 0, '', sent_r, sent_t, tostring(base_r and base_r - now or 0), tostring(base_t and base_t - now or 0)}
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
  private readonly leaseMs: number;
  private readonly maxLeaseCalls: number;
  private readonly leaseTtlMs: number;
  private readonly local = new LocalBuckets();
  /** Per bucket: the calls of a lease not yet handed out. */
  private readonly leases = new Map<string, Lease>();
  /** Per bucket: what leases left unused, given back with the bucket's next Redis call. */
  private readonly unused = new Map<string, { calls: number; tokens: number }>();
  /** Redis calls made for grants (a lease is one), for the caller's figures. */
  redisCalls = 0;
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
    this.leaseMs = options.leaseMs ?? 25;
    this.maxLeaseCalls = Math.max(1, options.maxLeaseCalls ?? 32);
    this.leaseTtlMs = options.leaseTtlMs ?? 100;
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
    const tokens = ms(req.tokens);
    const t0 = this.now();
    const held = this.leases.get(req.bucket);
    if (held) {
      const fromLease = this.fromLease(req.bucket, held, tokens, t0);
      if (fromLease) return fromLease;
    }
    const { calls, leaseTokens } = this.leaseSize(req.limits, tokens, ms(req.tokensPerCall ?? tokens));
    const back = this.unused.get(req.bucket);
    this.unused.delete(req.bucket);
    let reply: [number, number, string, number?, number?, string?, string?];
    try {
      this.redisCalls++;
      reply = (await this.withTimeout(
        (this.redis as unknown as Scripts).sluiceAcquire(
          `${this.prefix}:${req.bucket}`,
          req.limits.requestsPerMinute ?? 0,
          req.limits.tokensPerMinute ?? 0,
          req.limits.burstWindowMs ?? 1_000,
          tokens,
          calls,
          leaseTokens,
          back?.calls ?? 0,
          back?.tokens ?? 0,
        ),
      )) as typeof reply;
    } catch (err) {
      this.failed(err);
      return this.grantLocally(req);
    }
    this.stateNow = 'shared';
    const [ok, waitUs, reason, sentRequests, sentTokens, usedR, usedT] = reply;
    if (ok === 1) {
      const sent = { requests: Number(sentRequests) - calls + 1, tokens: Number(sentTokens) - leaseTokens + tokens };
      if (calls > 1) {
        const rpm = req.limits.requestsPerMinute ?? 0;
        const tpm = req.limits.tokensPerMinute ?? 0;
        // A lease taken while another's calls were being asked for replaces it: that one's are given back.
        const earlier = this.leases.get(req.bucket);
        if (earlier) this.giveBack(req.bucket, earlier);
        this.leases.set(req.bucket, {
          // Booked on Redis's clock between the ask and the answer: counted from the answer, late rather than early.
          at: this.now(),
          calls: calls - 1,
          tokens: leaseTokens - tokens,
          taken: 1,
          takenTokens: tokens,
          usedR: Number(usedR ?? 0) / 1_000,
          usedT: Number(usedT ?? 0) / 1_000,
          intervalR: rpm > 0 ? 60_000 / rpm : 0,
          intervalT: tpm > 0 ? 60_000 / tpm : 0,
          burstMs: req.limits.burstWindowMs ?? 1_000,
          before: { requests: sent.requests - 1, tokens: sent.tokens - tokens },
        });
      }
      return { granted: true, sent };
    }
    // Refused: nothing was booked, what was given back is back.
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
    const lease = this.leases.get(bucket);
    if (lease) this.giveBack(bucket, lease);
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

  /**
   * How many calls one Redis call books: the calls of `leaseMs` at the pace (bounded by tokens
   * too, at `tokensPerCall` each after the first), at least 1. Unlimited: `maxLeaseCalls`.
   */
  private leaseSize(limits: BucketLimits, tokens: number, perCall: number): { calls: number; leaseTokens: number } {
    if (this.leaseMs <= 0) return { calls: 1, leaseTokens: tokens };
    const rpm = limits.requestsPerMinute ?? 0;
    const tpm = limits.tokensPerMinute ?? 0;
    let calls = rpm > 0 ? Math.floor((rpm * this.leaseMs) / 60_000) : this.maxLeaseCalls;
    if (tpm > 0)
      calls = Math.min(
        calls,
        1 + Math.floor(Math.max(0, (tpm * this.leaseMs) / 60_000 - tokens) / Math.max(1, perCall)),
      );
    calls = Math.max(1, Math.min(this.maxLeaseCalls, calls));
    return { calls, leaseTokens: tokens + (calls - 1) * perCall };
  }

  /**
   * A call out of the bucket's lease, when it fits: at the spacing the bucket booked the lease's
   * calls at (the k-th no sooner than the bucket would have granted it), in the tokens left. A
   * lease past its time, spent, or short of the call's tokens is given back, and Redis is asked.
   */
  private fromLease(bucket: string, lease: Lease, tokens: number, t: number): AcquireResult | undefined {
    if (lease.calls <= 0 || lease.tokens < tokens || t - lease.at > this.leaseTtlMs) {
      this.giveBack(bucket, lease);
      return undefined;
    }
    const elapsed = t - lease.at;
    const waitR = lease.usedR + (lease.taken + 1) * lease.intervalR - lease.burstMs - elapsed;
    const waitT = lease.usedT + (lease.takenTokens + tokens) * lease.intervalT - lease.burstMs - elapsed;
    if (waitR > 0 || waitT > 0)
      return {
        granted: false,
        retryAfterMs: Math.ceil(Math.max(waitR, waitT)),
        reason: waitR >= waitT ? 'requests' : 'tokens',
      };
    lease.calls--;
    lease.tokens -= tokens;
    lease.taken++;
    lease.takenTokens += tokens;
    return {
      granted: true,
      sent: { requests: lease.before.requests + lease.taken, tokens: lease.before.tokens + lease.takenTokens },
    };
  }

  /** Ends a lease; what it did not hand out goes back with the bucket's next Redis call. */
  private giveBack(bucket: string, lease: Lease): void {
    this.leases.delete(bucket);
    if (lease.calls <= 0 && lease.tokens <= 0) return;
    const u = this.unused.get(bucket) ?? { calls: 0, tokens: 0 };
    u.calls += Math.max(0, lease.calls);
    u.tokens += Math.max(0, lease.tokens);
    this.unused.set(bucket, u);
  }

  private grantLocally(req: AcquireRequest): AcquireResult {
    return this.local.acquire(req, this.now());
  }

  private failed(err: unknown): void {
    // Leases are Redis's bookings: while its buckets do not answer, the local ones pace alone.
    this.leases.clear();
    this.unused.clear();
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

/** Calls one Redis call booked for this process, handed out at the bucket's spacing. Times in ms. */
interface Lease {
  /** When it was granted, on this process's clock. */
  at: number;
  /** Calls and tokens not yet handed out. */
  calls: number;
  tokens: number;
  /** Calls and tokens handed out, the first (granted with the lease) included. */
  taken: number;
  takenTokens: number;
  /** How far each dimension was booked ahead of the grant, before it. */
  usedR: number;
  usedT: number;
  /** ms a call, ms a token; 0 for a dimension without a limit. */
  intervalR: number;
  intervalT: number;
  burstMs: number;
  /** What every replica had been granted before the lease. */
  before: { requests: number; tokens: number };
}

interface Scripts {
  sluiceAcquire(
    key: string,
    rpm: number,
    tpm: number,
    burstMs: number,
    tokens: number,
    leaseCalls: number,
    leaseTokens: number,
    backCalls: number,
    backTokens: number,
  ): Promise<unknown>;
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
