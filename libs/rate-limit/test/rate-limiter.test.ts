import { FaultProxy, freePort, stackSettings, uniqueName } from '@sluice/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { LimitLearner, LocalBuckets, RateLimiter, type BucketLimits } from '../src/index.js';

describe('RateLimiter on real Redis', () => {
  const a = new Redis(stackSettings().redisUrl);
  const b = new Redis(stackSettings().redisUrl);
  afterAll(() => {
    a.disconnect();
    b.disconnect();
  });
  // Two replicas, each with its own connection, one shared bucket.
  const replicaA = new RateLimiter({ redis: a, keyPrefix: uniqueName('rl') });
  const prefix = uniqueName('rl');
  const one = new RateLimiter({ redis: a, keyPrefix: prefix });
  const two = new RateLimiter({ redis: b, keyPrefix: prefix });

  it('admits one burst window of requests across replicas, then names the wait', async () => {
    // 600 rpm with a 1 s window: 10 admitted at once, the 11th waits about 100 ms.
    const limits = { requestsPerMinute: 600, burstWindowMs: 1_000 };
    const results = await Promise.all(
      Array.from({ length: 14 }, (_, i) =>
        (i % 2 ? one : two).acquire({ bucket: 'openai:gpt-4o-mini:k1', limits, tokens: 0 }),
      ),
    );
    expect(results.filter((r) => r.granted)).toHaveLength(10);
    const refused = results.find((r) => !r.granted);
    expect(refused).toMatchObject({ granted: false, reason: 'requests' });
    expect(refused && !refused.granted && refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused && !refused.granted && refused.retryAfterMs).toBeLessThanOrEqual(500);
  });

  it('reserves tokens and refuses when the token bucket cannot hold the reservation', async () => {
    const limits = { requestsPerMinute: 10_000, tokensPerMinute: 60_000, burstWindowMs: 1_000 }; // 1,000 tokens held
    expect(await one.acquire({ bucket: 'openai:gpt-4o:k1', limits, tokens: 700 })).toEqual({
      granted: true,
      sent: { requests: 1, tokens: 700 },
    });
    const second = await two.acquire({ bucket: 'openai:gpt-4o:k1', limits, tokens: 700 });
    expect(second).toMatchObject({ granted: false, reason: 'tokens' });
    // The refused call took nothing: a small one still fits. Grants are counted over every replica.
    expect(await two.acquire({ bucket: 'openai:gpt-4o:k1', limits, tokens: 250 })).toEqual({
      granted: true,
      sent: { requests: 2, tokens: 950 },
    });
  });

  // Regression: the room saved during a pause went out at once when it ended; after each short
  // wait of a sliding window that burst met a 429 again (767 per 10k calls in the rate model).
  it('ends a pause with the bucket empty: calls go on at the pace, not in a burst', async () => {
    const limits = { requestsPerMinute: 600, burstWindowMs: 1_000 }; // 10 a second, 10 held
    await one.pause('openai:gpt-4o:k4', 150);
    await new Promise((r) => setTimeout(r, 200));
    const results = await Promise.all(
      Array.from({ length: 5 }, () => two.acquire({ bucket: 'openai:gpt-4o:k4', limits, tokens: 0 })),
    );
    // Without a pause the same five would all go (ten held, see the first test).
    expect(results.filter((r) => r.granted).length).toBeLessThanOrEqual(2);
    const refused = results.find((r) => !r.granted);
    expect(refused && !refused.granted && refused.reason).toBe('requests');
  });

  it('pauses a bucket for every replica when a provider says retry-after, and never shortens a pause', async () => {
    const limits = { requestsPerMinute: 100_000 };
    await one.pause('azure:gpt-4o:k2', 2_000);
    await one.pause('azure:gpt-4o:k2', 10);
    const r = await two.acquire({ bucket: 'azure:gpt-4o:k2', limits, tokens: 1 });
    expect(r).toMatchObject({ granted: false, reason: 'paused' });
    expect(!r.granted && r.retryAfterMs).toBeGreaterThan(1_500);
    // Other buckets go on.
    expect(await two.acquire({ bucket: 'azure:gpt-4o:k3', limits, tokens: 1 })).toMatchObject({ granted: true });
    expect(await replicaA.acquire({ bucket: 'azure:gpt-4o:k2', limits, tokens: 1 })).toMatchObject({ granted: true });
  });

  it("keeps a bucket's level across a pace change: a raised pace neither waits out the old one nor bursts", async () => {
    // Paces far apart, so that a loaded machine's delays (tens of ms between calls) cannot change
    // what is asserted: one call per 10 s, and 10 per second with a second of burst (10 calls).
    const slow = { requestsPerMinute: 6, burstWindowMs: 10_000 };
    const fast = { requestsPerMinute: 600, burstWindowMs: 1_000 };
    const bucket = 'compatible:llama:k9';
    expect(await one.acquire({ bucket, limits: slow, tokens: 0 })).toMatchObject({ granted: true });
    expect(await two.acquire({ bucket, limits: slow, tokens: 0 })).toMatchObject({ granted: false });
    // The bucket is spent. The pace rose 100×: the next call waits one interval of it (100 ms), not
    // the 10 s it was at 6 per minute; nor does the larger bucket of the new pace let a burst by.
    const raised = await two.acquire({ bucket, limits: fast, tokens: 0 });
    expect(raised).toMatchObject({ granted: false, reason: 'requests' });
    expect(!raised.granted && raised.retryAfterMs).toBeLessThanOrEqual(101);
    await new Promise((r) => setTimeout(r, 150));
    const granted = [];
    for (let i = 0; i < 10; i++) granted.push((await one.acquire({ bucket, limits: fast, tokens: 0 })).granted);
    expect(granted.filter(Boolean).length).toBeGreaterThanOrEqual(1);
    expect(granted.filter(Boolean).length).toBeLessThanOrEqual(4); // 150 ms (and the loop's) of 10/s, not a burst of 10
    // Back at 6 per minute the bucket is as spent as it was (less than a call of room, unless 10 s
    // went by): refused, for less than one interval (10 s).
    const lowered = await two.acquire({ bucket, limits: slow, tokens: 0 });
    expect(lowered).toMatchObject({ granted: false, reason: 'requests' });
    expect(!lowered.granted && lowered.retryAfterMs).toBeLessThanOrEqual(10_000);
    // The local buckets (Redis not answering) do the same, on a clock of the test's.
    const local = new LocalBuckets();
    expect(local.acquire({ bucket, limits: slow, tokens: 0 }, 0)).toMatchObject({ granted: true });
    expect(local.acquire({ bucket, limits: slow, tokens: 0 }, 10)).toMatchObject({ granted: false });
    expect(local.acquire({ bucket, limits: fast, tokens: 0 }, 10)).toMatchObject({ granted: false });
    expect(local.acquire({ bucket, limits: fast, tokens: 0 }, 110)).toMatchObject({ granted: true });
    expect(local.acquire({ bucket, limits: fast, tokens: 0 }, 110)).toMatchObject({ granted: false });
    expect(local.acquire({ bucket, limits: slow, tokens: 0 }, 120)).toMatchObject({ granted: false });
  });

  describe('leases: one Redis call books the calls of 25 ms at a high pace', () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    /** Asks as a dispatcher does, again after each wait, until `ms` have gone by; counts grants. */
    async function run(limiter: RateLimiter, bucket: string, limits: BucketLimits, ms: number, tokens = 0) {
      let granted = 0;
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const r = await limiter.acquire({ bucket, limits, tokens });
        if (r.granted) granted++;
        else await sleep(Math.min(r.retryAfterMs, end - Date.now()));
      }
      return granted;
    }

    it('hands out the lease at the bucket’s pace: no more calls than the limit, a Redis call per many', async () => {
      const limiter = new RateLimiter({ redis: a, keyPrefix: uniqueName('rl') });
      // 800 a second with a quarter second of burst (200 calls): a lease is 20 calls.
      const limits = { requestsPerMinute: 48_000, burstWindowMs: 250 };
      const started = Date.now();
      const granted = await run(limiter, 'openai:gpt-4o-mini:lease', limits, 600);
      const seconds = (Date.now() - started) / 1_000;
      // Never more than the burst and the pace over the time taken (and one lease's rounding).
      expect(granted).toBeLessThanOrEqual(200 + 800 * seconds + 20);
      // The pace is reached: well over the burst alone (a loaded machine still asks fast enough).
      expect(granted).toBeGreaterThan(200 + 800 * 0.6 * 0.5);
      // Without leases this is one Redis call a grant.
      expect(limiter.redisCalls).toBeLessThanOrEqual(granted / 10);
    });

    it("spaces a lease's calls as the bucket would have granted them: no burst beyond the bucket's", async () => {
      const limiter = new RateLimiter({ redis: a, keyPrefix: uniqueName('rl') });
      // 800 a second, 25 ms of burst (20 calls): the second lease's calls come one per 1.25 ms.
      const limits = { requestsPerMinute: 48_000, burstWindowMs: 25 };
      const bucket = 'openai:gpt-4o-mini:spaced';
      const at: number[] = [];
      while (at.length < 60) {
        const r = await limiter.acquire({ bucket, limits, tokens: 0 });
        if (r.granted) at.push(performance.now());
        else await sleep(r.retryAfterMs);
      }
      // After the burst (20), 40 calls at 1.25 ms: no sooner than 48.75 ms after the 21st (less
      // timer slack). A lease handed out at once would let them by in about 25 ms.
      expect(at[59]! - at[20]!).toBeGreaterThanOrEqual(39 * 1.25 * 0.9);
    });

    it('two replicas with leases on one bucket keep to the limit together', async () => {
      const prefix = uniqueName('rl');
      const x = new RateLimiter({ redis: a, keyPrefix: prefix });
      const y = new RateLimiter({ redis: b, keyPrefix: prefix });
      const limits = { requestsPerMinute: 48_000, burstWindowMs: 250 };
      const started = Date.now();
      const [gx, gy] = await Promise.all([
        run(x, 'openai:gpt-4o-mini:shared', limits, 600),
        run(y, 'openai:gpt-4o-mini:shared', limits, 600),
      ]);
      const seconds = (Date.now() - started) / 1_000;
      expect(gx + gy).toBeLessThanOrEqual(200 + 800 * seconds + 40);
      expect(gx).toBeGreaterThan(0);
      expect(gy).toBeGreaterThan(0);
    });

    /** Calls booked ahead of now on a bucket's request dimension, read from Redis. */
    async function bookedCalls(prefix: string, bucket: string): Promise<number> {
      const [r, ri] = await a.hmget(`${prefix}:${bucket}`, 'r', 'ri');
      const [s, us] = await a.time();
      return Math.max(0, Number(r) - (Number(s) * 1e6 + Number(us))) / Number(ri);
    }

    it('gives back what a lease did not use when its time is up: counted as the calls made', async () => {
      const prefix = uniqueName('rl');
      const x = new RateLimiter({ redis: a, keyPrefix: prefix, leaseTtlMs: 50 });
      // 800 calls a second: a lease is 20 calls (of 100 tokens, 2,000 in all).
      const limits = { requestsPerMinute: 48_000, tokensPerMinute: 6_000_000, burstWindowMs: 250 };
      const bucket = 'openai:gpt-4o:giveback';
      expect(await x.acquire({ bucket, limits, tokens: 100 })).toEqual({
        granted: true,
        sent: { requests: 1, tokens: 100 },
      });
      expect(await bookedCalls(prefix, bucket)).toBeGreaterThan(15); // the lease's 20, less a few ms of refill
      await sleep(80); // past its time, 19 calls unused
      expect(await x.acquire({ bucket, limits, tokens: 100 })).toEqual({
        granted: true,
        sent: { requests: 2, tokens: 200 }, // not 21 and 2,100
      });
      expect(x.redisCalls).toBe(2);
      // A lease whose calls all went, with tokens left (estimates ran high): those go back alone.
      await sleep(80);
      for (let i = 0; i < 20; i++)
        expect((await x.acquire({ bucket, limits, tokens: 50, tokensPerCall: 100 })).granted).toBe(true);
      expect(await x.acquire({ bucket, limits, tokens: 50 })).toMatchObject({
        granted: true,
        sent: { requests: 23, tokens: 1_250 },
      });
      expect(x.state).toBe('shared');
      expect(x.fallbacks).toBe(0);
    });

    it('a call larger than what the lease has left asks Redis again, and the rest goes back with it', async () => {
      const prefix = uniqueName('rl');
      const limiter = new RateLimiter({ redis: a, keyPrefix: prefix });
      const limits = { requestsPerMinute: 48_000, tokensPerMinute: 6_000_000, burstWindowMs: 250 };
      const bucket = 'openai:gpt-4o:short';
      await limiter.acquire({ bucket, limits, tokens: 100, tokensPerCall: 100 }); // 20 calls, 2,000 tokens
      expect(limiter.redisCalls).toBe(1);
      expect(await limiter.acquire({ bucket, limits, tokens: 100 })).toMatchObject({ granted: true });
      expect(limiter.redisCalls).toBe(1);
      // 5,000 tokens: more than the lease's 1,800, and a lease of one call (25 ms of tokens is 2,500).
      const big = await limiter.acquire({ bucket, limits, tokens: 5_000 });
      expect(big).toEqual({ granted: true, sent: { requests: 3, tokens: 5_200 } });
      expect(limiter.redisCalls).toBe(2);
      // Three calls booked, not the first lease's 20 and one more.
      const booked = await bookedCalls(prefix, bucket);
      expect(booked).toBeGreaterThan(0);
      expect(booked).toBeLessThanOrEqual(3);
    });
  });

  it("shares learned limits: a replica that knows nothing begins at another's, not from slow start", async () => {
    const bucket = 'compatible:llama:k1';
    expect(await two.learned(bucket)).toBeUndefined();
    // Replica one met a 429 whose body stated 2,400 requests per minute.
    const first = new LimitLearner({ configured: {} });
    first.learn({ requestsPerMinute: 2_400 });
    await one.shareLearned(bucket, first.knowledge()!);
    const learned = await two.learned(bucket);
    expect(learned).toEqual({ requestsPerMinute: 2_400, by: 'body' });
    const second = new LimitLearner({ configured: {} });
    expect(second.limits().requestsPerMinute).toBe(60); // slow start
    expect(second.adopt(learned!)).toBe(true);
    expect(second.mode).toBe('stated');
    expect(second.limits().requestsPerMinute).toBe(2_400);
    // A learner with limits of its own keeps them.
    const third = new LimitLearner({ configured: {} });
    third.learn({ requestsPerMinute: 1_200 }, true);
    expect(third.adopt(learned!)).toBe(false);
    expect(third.limits().requestsPerMinute).toBe(1_200);
    // A later share replaces the whole entry; a probed rate ends slow start where nothing states limits.
    await two.shareLearned(bucket, { requestsPerMinute: 900, by: 'probing' });
    expect(await one.learned(bucket)).toEqual({ requestsPerMinute: 900, by: 'probing' });
    const fourth = new LimitLearner({ configured: {} });
    expect(fourth.adopt((await one.learned(bucket))!)).toBe(true);
    expect(fourth.mode).toBe('probing');
    expect(fourth.limits().requestsPerMinute).toBe(900);
    // Shared for a bounded time: the entry expires (an hour after the last share).
    const ttl = await a.pttl(`${prefix}:${bucket}:learned`);
    expect(ttl).toBeGreaterThan(3_500_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
  });
});

describe('RateLimiter when Redis does not answer (real Redis behind a fault proxy)', () => {
  it("paces at this replica's share of the limits meanwhile, then shares Redis's buckets again", async () => {
    const target = new URL(stackSettings().redisUrl);
    const port = await freePort(21_000, 22_000);
    const proxy = new FaultProxy(
      { host: '127.0.0.1', port },
      { host: target.hostname, port: Number(target.port || 6379) },
    );
    await proxy.start();
    const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    const limiter = new RateLimiter({ redis, keyPrefix: uniqueName('rl-down'), timeoutMs: 300, retryMs: 500 });
    // 60 rpm, 10 s window: 10 at once shared; a third of it (one replica of three) is 3 at once. A
    // call comes back only every 1 s (3 s locally), so a loaded machine's delays cannot add one.
    const limits = { requestsPerMinute: 60, burstWindowMs: 10_000 };
    const burst = async (bucket: string, n: number) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push(await limiter.acquire({ bucket, limits, tokens: 0, share: 1 / 3 }));
      return out;
    };
    try {
      const shared = await burst('openai:m:k', 12);
      expect(shared.filter((r) => r.granted)).toHaveLength(10);
      expect(shared[0]).toMatchObject({ granted: true, sent: { requests: 1, tokens: 0 } });
      expect(limiter.state).toBe('shared');

      proxy.mode = 'blackhole';
      const t0 = Date.now();
      const local = await burst('openai:m:k2', 5);
      // The first call waited out the timeout, then the local bucket answered: a third of 10 at once.
      expect(Date.now() - t0).toBeLessThan(2_000);
      expect(limiter.state).toBe('local');
      expect(limiter.fallbacks).toBe(1);
      expect(limiter.lastError?.message).toMatch(/did not answer within 300 ms/);
      expect(local.filter((r) => r.granted)).toHaveLength(3);
      expect(local[0]).toEqual({ granted: true });
      const refused = local[3]!;
      // A third of 60 rpm holds 3.3 calls, one every 3 s: the 4th fits about 2 s on.
      expect(!refused.granted && refused.reason).toBe('requests');
      expect(!refused.granted && refused.retryAfterMs).toBeGreaterThan(1_000);
      expect(!refused.granted && refused.retryAfterMs).toBeLessThanOrEqual(3_000);
      // A provider's retry-after holds locally too.
      await limiter.pause('openai:m:k3', 5_000);
      expect(await limiter.acquire({ bucket: 'openai:m:k3', limits, tokens: 0 })).toMatchObject({
        granted: false,
        reason: 'paused',
      });

      proxy.mode = 'pass';
      await new Promise((r) => setTimeout(r, 600));
      const back = await limiter.acquire({ bucket: 'openai:m:k4', limits, tokens: 0 });
      expect(back).toEqual({ granted: true, sent: { requests: 1, tokens: 0 } });
      expect(limiter.state).toBe('shared');
    } finally {
      redis.disconnect();
      await proxy.stop();
    }
  }, 30_000);
});

describe('LocalBuckets', () => {
  it('admits both dimensions at the share given, as the shared script does', () => {
    const b = new LocalBuckets();
    const limits = { requestsPerMinute: 6_000, tokensPerMinute: 60_000, burstWindowMs: 1_000 };
    // Half of 1,000 tokens a second: 500 held; 400 fits, another 400 waits 300 ms of refill.
    expect(b.acquire({ bucket: 'x', limits, tokens: 400, share: 0.5 }, 0)).toEqual({ granted: true });
    expect(b.acquire({ bucket: 'x', limits, tokens: 400, share: 0.5 }, 0)).toEqual({
      granted: false,
      retryAfterMs: 600,
      reason: 'tokens',
    });
    expect(b.acquire({ bucket: 'x', limits, tokens: 400, share: 0.5 }, 600)).toEqual({ granted: true });
  });
});
