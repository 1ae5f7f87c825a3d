import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { createOpenAIAdapter } from '@sluice/providers';
import { RateLimiter } from '@sluice/rate-limit';
import { createSchemaCodecs, type PromptOutcome, type SchemaCodecs } from '@sluice/schemas';
import { FaultProxy, freePort, stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DelayProcessor } from '../../delay/src/delay-processor.js';
import { Dispatcher, type DispatcherOptions } from '../src/dispatcher.js';
import { collectOutcomes, seedLaneJob } from './helpers.js';
import { createAzureAdapter, createCompatibleAdapter, createGeminiAdapter } from '@sluice/providers';

const s = stackSettings();
const log = pino({ level: process.env['DISPATCH_LOG'] ?? 'warn' });
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('dispatch-test'), logger: log });
const redis = new Redis(s.redisUrl);
let codecs: SchemaCodecs;
let sim: ProviderSimServer;
let delay: DelayProcessor;

beforeAll(async () => {
  codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
  sim = await startProviderSim({
    config: {
      seed: 3,
      latency: { baseMs: 5, perTokenMs: 0.1, sigma: 0.3 },
      keys: {
        // The provider allows 50 requests/s; the dispatcher is told 100/s, so it meets 429s.
        'sk-busy': {
          dialect: 'openai',
          limits: { rpm: 3_000, burstWindowMs: 1_000 },
          faults: { errorRate: 0.05, timeoutRate: 0.02 },
        },
        'sk-fine': { dialect: 'openai', limits: {} },
        'sk-broke': { dialect: 'openai', limits: {}, quotaExhausted: true },
        // Every call takes 9 s: longer than the 6 s session timeout the test gives the consumer.
        'sk-slow': { dialect: 'openai', limits: {}, latency: { baseMs: 9_000, perTokenMs: 0, sigma: 0 } },
        'az-key': { dialect: 'azure', limits: { rpm: 6_000, tpm: 1_000_000 } },
        'gm-key': { dialect: 'gemini', limits: { rpm: 6_000 } },
        // 250 requests/s, a fifth of it taken by a consumer the dispatcher does not see. 3 % 500s,
        // 1 % hangs; the test places a 2 s burst of 503s, then empties the bucket by bursts of
        // its own (429s).
        'sk-volume': {
          dialect: 'openai',
          limits: { rpm: 15_000, burstWindowMs: 1_000 },
          externalShare: 0.2,
          faults: { errorRate: 0.03, timeoutRate: 0.01 },
        },
        // 100 requests/s shared by two dispatcher replicas.
        'sk-pair': {
          dialect: 'openai',
          limits: { rpm: 6_000, burstWindowMs: 1_000 },
          latency: { baseMs: 20, perTokenMs: 0, sigma: 0.2 },
        },
        'sk-shared': { dialect: 'openai', limits: {}, latency: { baseMs: 100, perTokenMs: 0, sigma: 0 } },
        'sk-calm': { dialect: 'openai', limits: {}, latency: { baseMs: 1_500, perTokenMs: 0, sigma: 0 } },
        // Two keys of 50 requests/s each, pooled (with a third whose account has no credit).
        'sk-pool-a': { dialect: 'openai', limits: { rpm: 3_000, burstWindowMs: 1_000 } },
        'sk-pool-b': { dialect: 'openai', limits: { rpm: 3_000, burstWindowMs: 1_000 } },
        // An OpenAI-compatible server that states its limit (50 requests/s) only in 429 messages.
        'sk-learn': { dialect: 'compatible', limits: { rpm: 3_000, burstWindowMs: 1_000 } },
      },
    },
  });
  // The delay topics are the stack's, shared by every test that runs a pipeline: one delay group
  // (the default, as in a deployment), or each delayed prompt would go back to its lane once per group.
  delay = new DelayProcessor({ kafka, log });
  await delay.start();
});

afterAll(async () => {
  await delay?.stop();
  await sim?.close();
  redis.disconnect();
});

/** A job of `n` prompts on a lane of its own, its results topic, and its view in Redis. */
const seedJob = (n: number, status = 'sealed', lane?: { provider: string; partition: number }) =>
  seedLaneJob({ kafka, codecs, redis }, n, status, lane);

function dispatcher(provider: string, apiKey: string, rpm: number, over: Partial<DispatcherOptions> = {}) {
  return new Dispatcher({
    kafka,
    codecs,
    redis,
    limiter: new RateLimiter({ redis, keyPrefix: uniqueName('rl') }),
    provider,
    adapter: createOpenAIAdapter({ apiKey, baseURL: `${sim.url}/v1` }),
    keyId: apiKey,
    limits: () => ({ requestsPerMinute: rpm, burstWindowMs: 1_000 }),
    concurrency: 32,
    callTimeoutMs: 500,
    groupId: uniqueName('dispatcher'),
    log,
    ...over,
  });
}

const outcomes = (jobId: string, expectedUnique: number, timeoutMs: number) =>
  collectOutcomes({ kafka, codecs, sim }, jobId, expectedUnique, timeoutMs);

describe('dispatcher and delay processor (real Kafka and Redis, simulated provider)', () => {
  it('ends 10,000 prompts under 429s, 5xx bursts and timeouts in exactly one outcome each', async () => {
    const n = Number(process.env['DISPATCH_N'] ?? 10_000);
    const { provider, jobId } = await seedJob(n);
    const d = dispatcher(provider, 'sk-volume', 24_000, { concurrency: 64 });
    await d.start();
    try {
      // A 2 s burst of 503s once calls flow (placed then, so a slow start cannot miss it).
      await waitFor(
        'calls to flow',
        () => ((sim.sim.ledger.stats().find((k) => k.key === 'sk-volume')?.requests ?? 0) >= 300 ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      const volume = sim.sim.currentConfig.keys['sk-volume']!;
      sim.sim.setKey('sk-volume', {
        ...volume,
        faults: { ...volume.faults, outages: [{ startMs: sim.sim.elapsed() + 200, durationMs: 2_000 }] },
      });
      // Then another client empties the key's bucket at once, three times: the dispatcher's
      // calls meet 429s it could not have foreseen.
      await new Promise((r) => setTimeout(r, 4_000));
      for (let burst = 0; burst < 3; burst++) {
        await Promise.all(
          Array.from({ length: 300 }, () =>
            fetch(`${sim.url}/v1/chat/completions`, {
              method: 'POST',
              headers: { authorization: 'Bearer sk-volume', 'content-type': 'application/json' },
              body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
              signal: AbortSignal.timeout(2_000), // the key's hangs hold some for good
            })
              .then((r) => r.arrayBuffer())
              .catch(() => undefined),
          ),
        );
        await new Promise((r) => setTimeout(r, 1_000));
      }
      const { all, unique } = await outcomes(jobId, n, 240_000);
      expect(unique.size).toBe(n);
      const first = new Map<string, PromptOutcome>();
      for (const o of all) if (!first.has(o.promptId)) first.set(o.promptId, o);
      expect([...first.values()].filter((o) => o.status !== 'succeeded' || o.result === null)).toEqual([]);
      const retried = [...first.values()].filter((o) => o.attempts > 1);
      expect(retried.length).toBeGreaterThan(0);
      expect(retried[0]?.attemptHistory.slice(0, -1).every((a) => a.outcome !== 'ok')).toBe(true);
      const duplicates = all.length - unique.size;
      expect(duplicates / n).toBeLessThanOrEqual(0.005);
      const reasons = sim.sim.ledger.stats().find((k) => k.key === 'sk-volume')?.byReason ?? {};
      // The provider really refused and failed calls: the retries were needed.
      expect(reasons['rpm'] ?? 0).toBeGreaterThan(0);
      expect(reasons['outage'] ?? 0).toBeGreaterThan(0);
      expect((reasons['error_500'] ?? 0) + (reasons['timeout'] ?? 0)).toBeGreaterThan(0);
    } finally {
      await d.stop();
    }
  }, 300_000);

  it("pauses the lane through a provider outage instead of spending every prompt's attempts", async () => {
    const { provider, jobId } = await seedJob(600);
    // Down for 8 s from 1.5 s on; the dispatcher would call at 100/s.
    const outageStart = sim.sim.elapsed() + 1_500;
    sim.sim.setKey('sk-outage', {
      dialect: 'openai',
      limits: {},
      latency: { baseMs: 10, perTokenMs: 0, sigma: 0.2 },
      faults: { outages: [{ startMs: outageStart, durationMs: 8_000 }] },
    });
    const d = dispatcher(provider, 'sk-outage', 6_000, { concurrency: 16 });
    await d.start();
    try {
      const { unique, all } = await outcomes(jobId, 600, 120_000);
      expect(unique.size).toBe(600);
      expect(all.filter((o) => o.status !== 'succeeded')).toEqual([]);
      const outageCalls = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-outage' && r.reason === 'outage');
      // Without the breaker about 800 calls would meet the outage (100/s for 8 s).
      expect(outageCalls.length).toBeGreaterThan(0);
      expect(outageCalls.length).toBeLessThan(80);
      expect(d.breaker.opened).toBeGreaterThanOrEqual(1);
      expect(Math.max(...all.map((o) => o.attempts))).toBeLessThanOrEqual(3);
    } finally {
      await d.stop();
    }
  }, 150_000);

  it('keeps two replicas sharing one key under its limit: at most 1 rejection per 1,000 calls after 10 s', async () => {
    const n = 3_000;
    const { provider, jobId } = await seedJob(n);
    const groupId = uniqueName('pair');
    const keyPrefix = uniqueName('rl-pair');
    const t0 = sim.sim.elapsed();
    const replicas = [0, 1].map(() =>
      dispatcher(provider, 'sk-pair', 6_000, {
        groupId,
        limiter: new RateLimiter({ redis, keyPrefix }),
        concurrency: 16,
        callTimeoutMs: 5_000,
      }),
    );
    await Promise.all(replicas.map((r) => r.start()));
    try {
      const { unique } = await outcomes(jobId, n, 120_000);
      expect(unique.size).toBe(n);
      const rows = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-pair' && r.t >= t0);
      const start = rows[0]!.t;
      const late = rows.filter((r) => r.t >= start + 10_000);
      const rejected = late.filter((r) => r.outcome === 'rejected').length;
      // Both replicas called (the lane's partitions were split between them)...
      expect(replicas.every((r) => r.joins >= 1)).toBe(true);
      expect(late.length).toBeGreaterThan(1_000);
      // ...and together kept to the key's limit.
      expect(rejected / late.length).toBeLessThanOrEqual(0.001);
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
  }, 150_000);

  it('shares a limit learned from a 429 through Redis: the next replica on the key begins at it, without slow start or 429', async () => {
    const keyPrefix = uniqueName('rl-learn');
    const groupId = uniqueName('learn');
    const lane = { provider: `dlearn${randomBytes(4).toString('hex')}`, partition: 0 };
    const compatible = () =>
      dispatcher(lane.provider, 'sk-learn', 0, {
        adapter: createCompatibleAdapter({ apiKey: 'sk-learn', baseURL: `${sim.url}/v1` }),
        limits: () => ({}), // told nothing: the limit is learned
        limiter: new RateLimiter({ redis, keyPrefix }),
        groupId,
        callTimeoutMs: 5_000,
      });
    /** Runs a job of `n` prompts through a new dispatcher on the lane; the key's ledger rows of it. */
    const run = async (n: number) => {
      const { jobId } = await seedJob(n, 'sealed', lane);
      const d = compatible();
      const t0 = sim.sim.elapsed();
      await d.start();
      try {
        expect((await outcomes(jobId, n, 60_000)).unique.size).toBe(n);
      } finally {
        await d.stop();
      }
      const rows = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-learn' && r.t >= t0);
      const start = rows[0]!.t;
      return {
        firstTwoSeconds: rows.filter((r) => r.t < start + 2_000).length,
        rejected: (ms: number) => rows.filter((r) => r.t < start + ms && r.outcome === 'rejected').length,
      };
    };
    // The first process starts slow, meets the limit, and learns it from the 429's message.
    const first = await run(400);
    expect(first.rejected(Infinity)).toBeGreaterThan(0);
    expect(first.firstTwoSeconds).toBeLessThan(40);
    // The next one on the key (a restart here; another replica alike) begins at the learned pace:
    // its first 2 s near the limit (50/s), and no 429 in its first 8 s (later it may probe above
    // a limit only a 429 stated).
    const second = await run(600);
    expect(second.firstTwoSeconds).toBeGreaterThan(80);
    expect(second.rejected(8_000)).toBe(0);
  }, 150_000);

  it("keeps two replicas under their key's limit while Redis does not answer, each at its share, and loses no prompt", async () => {
    const n = 2_400;
    const { provider, jobId } = await seedJob(n);
    const target = new URL(s.redisUrl);
    const address = { host: '127.0.0.1', port: await freePort(22_000, 23_000) };
    const proxy = new FaultProxy(address, { host: target.hostname, port: Number(target.port || 6379) });
    await proxy.start();
    const groupId = uniqueName('pair-down');
    const keyPrefix = uniqueName('rl-down');
    const clients = [0, 1].map(() => new Redis({ ...address, maxRetriesPerRequest: 1 }));
    const limiters = clients.map((c) => new RateLimiter({ redis: c, keyPrefix }));
    const t0 = sim.sim.elapsed();
    const replicas = clients.map((c, i) =>
      dispatcher(provider, 'sk-pair', 6_000, {
        groupId,
        redis: c,
        limiter: limiters[i]!,
        concurrency: 16,
        callTimeoutMs: 5_000,
      }),
    );
    await Promise.all(replicas.map((r) => r.start()));
    try {
      const rows = () => sim.sim.ledger.since(0).filter((r) => r.key === 'sk-pair' && r.t >= t0);
      await waitFor('a quarter of the prompts called', () => (rows().length >= n / 4 ? true : undefined), {
        timeoutMs: 60_000,
        intervalMs: 100,
      });
      proxy.mode = 'blackhole';
      const cutAt = sim.sim.elapsed();
      await new Promise((r) => setTimeout(r, 8_000));
      proxy.mode = 'pass';
      const restoredAt = sim.sim.elapsed();
      const { all, unique } = await outcomes(jobId, n, 120_000);
      // Every prompt succeeded (outcomes of prompts read again after the second replica joined
      // are repeats the sink drops: it keeps the first per prompt).
      expect(unique.size).toBe(n);
      expect(all.every((o) => o.status === 'succeeded')).toBe(true);
      // Both replicas fell back to their own buckets and shared Redis's again afterwards.
      expect(limiters.map((l) => l.fallbacks)).toEqual([1, 1]);
      expect(limiters.map((l) => l.state)).toEqual(['shared', 'shared']);
      // Meanwhile the provider kept being called, within its limit: each replica at half of it.
      const during = rows().filter((r) => r.t >= cutAt + 1_500 && r.t < restoredAt);
      expect(during.length).toBeGreaterThan(300);
      const rejected = during.filter((r) => r.outcome === 'rejected').length;
      expect(rejected / during.length).toBeLessThanOrEqual(0.01);
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
      clients.forEach((c) => c.disconnect());
      await proxy.stop();
    }
  }, 150_000);

  it('pools several keys of one model: their limits add up, and a key with no credit leaves the pool', async () => {
    const n = 3_000;
    const { provider, jobId } = await seedJob(n);
    const t0 = sim.sim.elapsed();
    const keys = ['sk-pool-a', 'sk-broke', 'sk-pool-b'].map((k) => ({
      keyId: k,
      adapter: createOpenAIAdapter({ apiKey: k, baseURL: `${sim.url}/v1` }),
    }));
    // Told no limits: each key's are learned from its own headers.
    const d = dispatcher(provider, 'unused', 0, { keys, limits: () => ({}), concurrency: 64, callTimeoutMs: 5_000 });
    await d.start();
    try {
      const { unique, all } = await outcomes(jobId, n, 120_000);
      expect(unique.size).toBe(n);
      expect(all.every((o) => o.status === 'succeeded')).toBe(true);
      const rows = sim.sim.ledger.since(0).filter((r) => r.t >= t0 && keys.some((k) => k.keyId === r.key));
      const on = (k: string) => rows.filter((r) => r.key === k);
      // The key without credit met a few calls in flight before its first answer, then no more.
      expect(on('sk-broke').length).toBeLessThanOrEqual(20);
      // The other two shared the work about evenly, each within its own limit...
      const a = on('sk-pool-a').filter((r) => r.outcome === 'admitted').length;
      const b = on('sk-pool-b').filter((r) => r.outcome === 'admitted').length;
      expect(a + b).toBe(all.length);
      expect(Math.min(a, b) / (a + b)).toBeGreaterThan(0.4);
      const good = rows.filter((r) => r.key !== 'sk-broke');
      const rejected = good.filter((r) => r.outcome === 'rejected').length;
      expect(rejected / good.length).toBeLessThanOrEqual(0.01);
      // ...so that together they went faster than one key's 50 requests/s can.
      const seconds = (good[good.length - 1]!.t - good[0]!.t) / 1_000;
      expect(n / seconds).toBeGreaterThan(70);
    } finally {
      await d.stop();
    }
  }, 150_000);

  it("ends a cancelled job's prompts as cancelled, without calling the provider", async () => {
    const { provider, jobId } = await seedJob(50, 'cancelled');
    const before = sim.sim.ledger.size;
    const d = dispatcher(provider, 'sk-fine', 60_000);
    await d.start();
    try {
      const { unique, all } = await outcomes(jobId, 50, 60_000);
      expect(unique.size).toBe(50);
      expect(all.every((o) => o.status === 'cancelled' && o.error?.code === 'JOB_CANCELLED' && o.attempts === 0)).toBe(
        true,
      );
      expect(sim.sim.ledger.size).toBe(before);
    } finally {
      await d.stop();
    }
  }, 90_000);

  it("fails a quota-exhausted key's prompts at once with a clear error instead of retrying", async () => {
    const { provider, jobId } = await seedJob(20);
    const d = dispatcher(provider, 'sk-broke', 60_000);
    await d.start();
    try {
      const { all } = await outcomes(jobId, 20, 60_000);
      expect(
        all.every((o) => o.status === 'failed' && o.error?.code === 'PROVIDER_QUOTA_EXHAUSTED' && o.attempts === 1),
      ).toBe(true);
      expect(all[0]?.error?.message).toMatch(/exceeded your current quota/);
    } finally {
      await d.stop();
    }
  }, 90_000);

  it('parks the lane of a key blocked by its daily quota: no more prompts read, none sent round the delay topics', async () => {
    const { provider, jobId } = await seedJob(300);
    sim.sim.setKey('sk-daily', { dialect: 'openai', limits: { rpd: 20 } });
    const d = dispatcher(provider, 'sk-daily', 6_000, { concurrency: 16 });
    await d.start();
    try {
      await waitFor('the lane parked', () => (d.parked ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
      // Until the quota's retry-after (the day's end), at most an hour before a call tries again.
      expect(d.parked!.until).toBeGreaterThan(Date.now() + 50 * 60_000);
      const { all } = await outcomes(jobId, 20, 30_000);
      await new Promise((r) => setTimeout(r, 2_000));
      const calls = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-daily');
      expect(calls.filter((r) => r.outcome === 'admitted')).toHaveLength(20);
      // Only the prompts in flight met the 429: the other 260-odd were not read, so not called.
      expect(calls.length).toBeLessThanOrEqual(20 + 16 + 2);
      // The waiting prompts neither failed nor went to the delay topics: 20 outcomes, all results.
      expect(all.filter((o) => o.status === 'succeeded')).toHaveLength(all.length);
      expect(new Set(all.map((o) => o.promptId)).size).toBe(20);
    } finally {
      await d.stop(2_000);
    }
  }, 90_000);

  it('keeps its group membership through calls longer than the session timeout: no rebalance, no redelivery', async () => {
    const { provider, jobId } = await seedJob(8);
    const d = dispatcher(provider, 'sk-slow', 60_000, { sessionTimeoutMs: 6_000, callTimeoutMs: 20_000 });
    await d.start();
    try {
      const { all, unique } = await outcomes(jobId, 8, 60_000);
      expect(unique.size).toBe(8);
      expect(all).toHaveLength(8);
      expect(all.every((o) => o.status === 'succeeded' && (o.result?.latencyMs ?? 0) >= 9_000)).toBe(true);
      expect(d.joins).toBe(1);
    } finally {
      await d.stop();
    }
  }, 90_000);

  // Regression: on SIGTERM the group stayed Stable (the partitions held) until the slowest call
  // in flight ended, up to the 30 s grace.
  it('leaves its group soon on stop, with calls in flight: the next replica calls those again, no prompt lost', async () => {
    const { provider, jobId } = await seedJob(6);
    const groupId = uniqueName('dispatcher');
    const over = { groupId, sessionTimeoutMs: 6_000, callTimeoutMs: 20_000, handBackMs: 500 };
    const first = dispatcher(provider, 'sk-slow', 60_000, over);
    await first.start();
    const admin = kafka.admin();
    await admin.connect();
    const next = dispatcher(provider, 'sk-slow', 60_000, over);
    try {
      // Six calls of 9 s each in flight.
      await waitFor(
        'calls in flight',
        () => ((first as unknown as { fair: { inFlight: number } }).fair.inFlight >= 6 ? true : undefined),
        {
          timeoutMs: 20_000,
          intervalMs: 50,
        },
      );
      const stopping = Date.now();
      const stopped = first.stop(30_000);
      await waitFor(
        'the group left',
        async () => {
          const { groups } = await admin.describeGroups([groupId]);
          return groups[0]?.members.length === 0 ? true : undefined;
        },
        { timeoutMs: 8_000, intervalMs: 100 },
      );
      // Left after the hand-back time, not after the 9 s calls (nor a session timeout).
      expect(Date.now() - stopping).toBeLessThan(5_000);
      await next.start();
      const { all, unique } = await outcomes(jobId, 6, 60_000);
      expect(unique.size).toBe(6);
      // The first replica's calls still wrote their outcomes; the next called the same prompts
      // again (handed back, not committed): the sink keeps the first of each row.
      expect(all.length).toBeLessThanOrEqual(12);
      await stopped;
    } finally {
      await admin.disconnect();
      await next.stop();
    }
  }, 90_000);

  it('survives its lane consumer stopping under it, as kafkajs does while it restarts after a broker outage', async () => {
    const { provider, jobId } = await seedJob(60);
    const d = dispatcher(provider, 'sk-calm', 60_000, {
      concurrency: 8,
      consumerStallMs: 3_000,
      callTimeoutMs: 10_000,
    });
    await d.start();
    const unhandled: unknown[] = [];
    const note = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', note);
    process.on('uncaughtException', note);
    try {
      // Wait for calls in flight, then stop the consumer the way kafkajs's crash handling does
      // (its group is dropped until the restart): the calls that end meanwhile free their slots
      // and resume partitions of a consumer that is not running.
      const t0 = Date.now();
      while ((d as unknown as { fair: { inFlight: number } }).fair.inFlight === 0 && Date.now() - t0 < 20_000)
        await new Promise((r) => setTimeout(r, 50));
      // The kafkajs consumer inside the dispatcher's lane consumer.
      await (d as unknown as { consumer: { consumer: { stop(): Promise<void> } } }).consumer.consumer.stop();
      // The process goes on, the calls in flight write their outcomes, and the watchdog replaces the
      // consumer that no longer fetches: every prompt ends once.
      const { all, unique } = await outcomes(jobId, 60, 60_000);
      expect(unhandled).toEqual([]);
      expect(unique.size).toBe(60);
      expect(all.every((o) => o.status === 'succeeded')).toBe(true);
      expect(d.consumerReplacements).toBeGreaterThanOrEqual(1);
    } finally {
      process.off('unhandledRejection', note);
      process.off('uncaughtException', note);
      await d.stop();
    }
  }, 90_000);

  it('runs the Azure OpenAI and Gemini dialects end to end', async () => {
    for (const [name, adapter] of [
      ['azure', createAzureAdapter({ endpoint: sim.url, apiKey: 'az-key' })],
      ['gemini', createGeminiAdapter({ apiKey: 'gm-key', baseUrl: sim.url })],
    ] as const) {
      const { provider, jobId } = await seedJob(20);
      const d = dispatcher(provider, name, 60_000, { adapter });
      await d.start();
      try {
        const { all, unique } = await outcomes(jobId, 20, 60_000);
        expect(unique.size, name).toBe(20);
        expect(
          all.every((o) => o.status === 'succeeded' && (o.result?.usage.totalTokens ?? 0) > 0),
          name,
        ).toBe(true);
      } finally {
        await d.stop();
      }
    }
  }, 120_000);

  it('serves a small job while a large backfill runs on the same lane', async () => {
    const provider = `d${randomBytes(4).toString('hex')}`;
    const backfill = await seedJob(600, 'sealed', { provider, partition: 0 });
    const d = dispatcher(provider, 'sk-shared', 60_000, { concurrency: 8 });
    await d.start();
    const done = new Map<string, number>();
    const consumer = kafka.consumer({ groupId: uniqueName('results') });
    try {
      // Let the backfill fill every slot, then submit the small job.
      await waitFor('the backfill to start', () => (sim.sim.ledger.size > 20 ? true : undefined), {
        timeoutMs: 30_000,
      });
      const small = await seedJob(20, 'sealed', { provider, partition: 1 });
      await consumer.connect();
      await consumer.subscribe({
        topics: [`sluice.results.${backfill.jobId}`, `sluice.results.${small.jobId}`],
        fromBeginning: true,
      });
      await consumer.run({ eachMessage: async ({ topic }) => void done.set(topic, (done.get(topic) ?? 0) + 1) });
      await waitFor(
        'the small job',
        () => ((done.get(`sluice.results.${small.jobId}`) ?? 0) >= 20 ? true : undefined),
        { timeoutMs: 60_000 },
      );
      // 8 slots of 100 ms calls: the backfill alone needs 7.5 s. The small job was not queued behind it.
      expect(done.get(`sluice.results.${backfill.jobId}`) ?? 0).toBeLessThan(300);
    } finally {
      await consumer.disconnect();
      await d.stop();
    }
  }, 90_000);
});
