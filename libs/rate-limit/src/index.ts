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
}

export type AcquireResult =
  | {
      granted: true;
      /** Calls and tokens every replica has been granted on this bucket so far, this one included. */
      sent: { requests: number; tokens: number };
    }
  | { granted: false; retryAfterMs: number; reason: 'requests' | 'tokens' | 'paused' };

export interface RateLimiterOptions {
  redis: Redis;
  /** @default "sluice:rl" */
  keyPrefix?: string;
}

// GCRA on both dimensions at once, on Redis's clock, so every replica shares one bucket.
// KEYS[1] = bucket hash (fields r, t: theoretical arrival times in µs; p: paused until µs;
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
local paused = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if paused > now then return {0, paused - now, 'paused'} end
local function check(field, per_minute, cost)
  if per_minute <= 0 then return nil, 0 end
  local interval = 60000000 / per_minute
  local capacity = per_minute * burst / 60000000
  local tat = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  local base = math.max(tat, now)
  local need = math.min(cost, capacity) * interval
  local used = base - now
  if used + need > capacity * interval + 1 then return nil, used + need - capacity * interval end
  return base + cost * interval, 0
end
local new_r, wait_r = check('r', rpm, 1)
if rpm > 0 and new_r == nil then return {0, wait_r, 'requests'} end
local new_t, wait_t = check('t', tpm, tokens)
if tpm > 0 and new_t == nil then return {0, wait_t, 'tokens'} end
if new_r then redis.call('HSET', KEYS[1], 'r', new_r) end
if new_t then redis.call('HSET', KEYS[1], 't', new_t) end
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
 */
export class RateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(options: RateLimiterOptions) {
    this.redis = options.redis;
    this.prefix = options.keyPrefix ?? 'sluice:rl';
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const [ok, waitUs, reason, sentRequests, sentTokens] = (await this.redis.eval(
      acquireScript,
      1,
      `${this.prefix}:${req.bucket}`,
      req.limits.requestsPerMinute ?? 0,
      req.limits.tokensPerMinute ?? 0,
      req.limits.burstWindowMs ?? 1_000,
      Math.max(0, Math.ceil(req.tokens)),
    )) as [number, number, string, number?, number?];
    if (ok === 1) return { granted: true, sent: { requests: Number(sentRequests), tokens: Number(sentTokens) } };
    return {
      granted: false,
      retryAfterMs: Math.ceil(Number(waitUs) / 1_000),
      reason: reason as 'requests' | 'tokens' | 'paused',
    };
  }

  /** Pauses a bucket for every replica (a provider's retry-after); never shortens a pause. */
  async pause(bucket: string, ms: number): Promise<void> {
    await this.redis.eval(pauseScript, 1, `${this.prefix}:${bucket}`, Math.max(0, Math.ceil(ms)));
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
