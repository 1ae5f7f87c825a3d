import { stackSettings, uniqueName } from '@sluice/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/index.js';

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
});
