import { stackSettings, uniqueName } from '@sluice/testing';
import { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { afterAll, describe, expect, it } from 'vitest';

describe('rate-limiter-flexible on real Redis', () => {
  const redis = new Redis(stackSettings().redisUrl, { maxRetriesPerRequest: 1 });
  afterAll(async () => {
    await redis.quit();
  });

  it('admits up to the configured points and rejects the next with the wait until reset', async () => {
    const limiter = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: uniqueName('smoke-rl'),
      points: 5,
      duration: 10,
    });
    const admitted = [];
    for (let i = 0; i < 5; i++) admitted.push(await limiter.consume('openai:gpt-4o-mini:key-a'));
    expect(admitted.map((r) => r.remainingPoints)).toEqual([4, 3, 2, 1, 0]);

    const rejection = await limiter.consume('openai:gpt-4o-mini:key-a').then(
      () => undefined,
      (res: unknown) => res,
    );
    expect(rejection).toBeInstanceOf(RateLimiterRes);
    expect((rejection as RateLimiterRes).msBeforeNext).toBeGreaterThan(0);
    expect((rejection as RateLimiterRes).msBeforeNext).toBeLessThanOrEqual(10_000);

    // Another key has its own bucket, and a second limiter instance sees the same shared state.
    expect((await limiter.consume('openai:gpt-4o-mini:key-b')).remainingPoints).toBe(4);
    const replica = new RateLimiterRedis({ storeClient: redis, keyPrefix: limiter.keyPrefix, points: 5, duration: 10 });
    expect((await replica.get('openai:gpt-4o-mini:key-a'))?.consumedPoints).toBe(6);
  });
});
