import { Redis } from 'ioredis';
import { pino } from 'pino';
import { JobView } from '@sluice/job-store';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { createOpenAIAdapter } from '@sluice/providers';
import { RateLimiter } from '@sluice/rate-limit';
import { createSchemaCodecs, type SchemaCodecs } from '@sluice/schemas';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dispatcher, type DispatcherOptions } from '../src/dispatcher.js';
import { collectOutcomes, seedLaneJob } from './helpers.js';

const s = stackSettings();
const log = pino({ level: process.env['DISPATCH_LOG'] ?? 'warn' });
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('window-test'), logger: log });
const redis = new Redis(s.redisUrl);
let codecs: SchemaCodecs;
let sim: ProviderSimServer;

// 3,000 requests a minute (50 a second) counted over 2 s windows: 100 a window, a short form of
// a gateway's 60 s windows. OpenAI's headers state the limit per minute, what remains of the
// window and when it resets.
const limits = { rpm: 3_000, burstWindowMs: 2_000 };

beforeAll(async () => {
  codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
  sim = await startProviderSim({
    config: {
      seed: 5,
      latency: { baseMs: 30, perTokenMs: 0, sigma: 0.2 },
      keys: {
        'sk-fixed': { dialect: 'openai', limits: { ...limits, accounting: 'fixed' } },
        'sk-sliding': { dialect: 'openai', limits: { ...limits, accounting: 'sliding-log' } },
        'sk-counter': { dialect: 'openai', limits: { ...limits, accounting: 'sliding-counter' } },
        // The IETF fields give `t` in whole seconds: a window of 10 s, so that their rounding is small.
        'sk-ietf': {
          dialect: 'openai',
          rateHeaders: 'ietf',
          limits: { ...limits, burstWindowMs: 10_000, accounting: 'fixed' },
        },
        'sk-azure': { dialect: 'openai', rateHeaders: 'remaining', limits: { ...limits, accounting: 'fixed' } },
        // Another client takes 80 % of a bucket that refills continuously: what remains runs out
        // at the stated pace, and Sluice is held to about a fifth of it, without a 429.
        'sk-crowded': { dialect: 'openai', limits, externalShare: 0.8 },
      },
    },
  });
});

afterAll(async () => {
  await sim?.close();
  redis.disconnect();
});

function dispatcher(provider: string, apiKey: string, over: Partial<DispatcherOptions> = {}) {
  return new Dispatcher({
    kafka,
    codecs,
    redis,
    limiter: new RateLimiter({ redis, keyPrefix: uniqueName('rl') }),
    provider,
    adapter: createOpenAIAdapter({ apiKey, baseURL: `${sim.url}/v1` }),
    keyId: apiKey,
    limits: () => ({}),
    concurrency: 64,
    callTimeoutMs: 5_000,
    groupId: uniqueName('dispatcher'),
    log,
    ...over,
  });
}

/** Admitted calls a second between the key's first and last admitted call, and its 429s. */
function ledgerOf(key: string) {
  const rows = sim.sim.ledger.since(0).filter((r) => r.key === key);
  const admitted = rows.filter((r) => r.outcome === 'admitted');
  const spanS = (admitted[admitted.length - 1]!.t - admitted[0]!.t) / 1_000;
  return {
    perSecond: admitted.length / spanS,
    rejected: rows.filter((r) => r.outcome === 'rejected').length,
    longestGapMs: admitted.slice(1).reduce((m, r, i) => Math.max(m, r.t - admitted[i]!.t), 0),
  };
}

async function run(key: string, n: number) {
  const { provider, jobId } = await seedLaneJob({ kafka, codecs, redis }, n);
  const d = dispatcher(provider, key);
  await d.start();
  try {
    const { unique } = await collectOutcomes({ kafka, codecs }, jobId, n, 90_000);
    expect(unique.size).toBe(n);
  } finally {
    await d.stop();
  }
  return { provider, ...ledgerOf(key) };
}

describe('rate control under window accountings (real Kafka and Redis, simulated provider)', () => {
  // Regression: under a fixed window the learner measured a refill of about 0 from what remains,
  // capped the stated limit with it and stopped calling after its first window, without a 429.
  it('a fixed window stated in OpenAI headers: calls go on window after window at the limit', async () => {
    const r = await run('sk-fixed', 1_000);
    expect(r.perSecond).toBeGreaterThanOrEqual(0.9 * 50);
    expect(r.longestGapMs).toBeLessThan(2_000);
    expect(r.rejected).toBeLessThanOrEqual(5);
  });

  // Regressions: each 429 at the window's edge was waited out for the header's whole second (the
  // message's "try again in 20ms" is the wait), and the rate just before it, read in whole
  // seconds, took the lane's own window for another client's share (0.69-0.78 of the limit, a
  // 429 a window). A sliding log of 2 s now runs at 0.97 of it here, with slow start's one 429.
  it('a sliding log stated in OpenAI headers: calls go on at the limit, with a margin and few 429s', async () => {
    const r = await run('sk-sliding', 1_000);
    expect(r.perSecond).toBeGreaterThanOrEqual(0.85 * 50);
    expect(r.longestGapMs).toBeLessThan(1_000);
    expect(r.rejected).toBeLessThanOrEqual(4);
  });

  // Regression: at the turn of a sliding counter's window what remains is about 0 and the reset a
  // whole window off; the fit of what is freed, formed over a window that freed nothing, held the
  // pace at a call a second until it caught up with the previous window's weight falling.
  it('a sliding counter stated in OpenAI headers: calls go on at the limit across each turn', async () => {
    const r = await run('sk-counter', 1_000);
    expect(r.perSecond).toBeGreaterThanOrEqual(0.9 * 50);
    expect(r.longestGapMs).toBeLessThan(1_000);
    expect(r.rejected).toBeLessThanOrEqual(5);
  });

  it('a fixed window stated in the IETF RateLimit-Policy and RateLimit fields: at the limit', async () => {
    const r = await run('sk-ietf', 1_000);
    expect(r.perSecond).toBeGreaterThanOrEqual(0.9 * 50);
    expect(r.rejected).toBeLessThanOrEqual(10);
  });

  it(
    'a fixed window that answers only what remains (Azure): found from the resets, then used whole',
    { timeout: 120_000 },
    async () => {
      const r = await run('sk-azure', 1_500);
      // Slow start and the 429s before three resets are seen count in the run: 0.8 of the limit.
      expect(r.perSecond).toBeGreaterThanOrEqual(0.8 * 50);
      // A 429 before the window is known waits for the window's end: at most one window.
      expect(r.longestGapMs).toBeLessThan(2_500);
    },
  );

  it('says when a lane is held under half its stated limit with no 429, and why; a lane at its limit says nothing', async () => {
    const view = new JobView(redis);
    const { provider, jobId } = await seedLaneJob({ kafka, codecs, redis }, 400);
    const d = dispatcher(provider, 'sk-crowded', { heldBackAfterMs: 2_000 });
    const healthy = await seedLaneJob({ kafka, codecs, redis }, 300);
    const h = dispatcher(healthy.provider, 'sk-fixed', { heldBackAfterMs: 2_000 });
    await d.start();
    await h.start();
    try {
      const note = await waitFor('the held-back note', async () => (await view.heldBack(provider, 'gpt-4o-mini'))[0], {
        timeoutMs: 30_000,
        intervalMs: 200,
      });
      expect(note.keyId).toBe('sk-crowded');
      expect(note.reason).toMatch(/^\d+ of 3000 requests per minute: what remains/);
      await collectOutcomes({ kafka, codecs }, healthy.jobId, 300, 60_000);
      expect(await view.heldBack(healthy.provider)).toEqual([]);
      await collectOutcomes({ kafka, codecs }, jobId, 400, 90_000);
    } finally {
      await d.stop();
      await h.stop();
    }
  });
});
