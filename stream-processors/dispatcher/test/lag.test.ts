import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { createOpenAIAdapter } from '@sluice/providers';
import { RateLimiter } from '@sluice/rate-limit';
import { createSchemaCodecs, type PromptRequest, type SchemaCodecs } from '@sluice/schemas';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dispatcher } from '../src/dispatcher.js';
import { collectOutcomes } from './helpers.js';

const s = stackSettings();
const log = pino({ level: process.env['DISPATCH_LOG'] ?? 'warn' });
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('lag-test'), logger: log });
const redis = new Redis(s.redisUrl);
let codecs: SchemaCodecs;
let sim: ProviderSimServer;

beforeAll(async () => {
  codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
  sim = await startProviderSim({
    config: {
      seed: 9,
      latency: { baseMs: 5, perTokenMs: 0, sigma: 0 },
      keys: { 'sk-lag': { dialect: 'openai', limits: {} } },
    },
  });
});

afterAll(async () => {
  await sim?.close();
  redis.disconnect();
});

describe("the dispatcher's consumer lag (real Kafka)", () => {
  // Regression: an upload is written in Kafka transactions, whose commit marker takes an offset
  // after the last record; the dispatcher committed last record + 1, so idle lane partitions
  // showed lag 1 forever.
  it('reaches 0 on every lane partition once a transactional upload is done', async () => {
    const provider = `lag${randomBytes(4).toString('hex')}`;
    const lane = `sluice.requests.${provider}`;
    const jobId = `job_${randomBytes(6).toString('hex')}`;
    await kafka.ensureTopics([
      { topic: lane, partitions: 4 },
      { topic: `sluice.results.${jobId}`, partitions: 1 },
    ]);
    await redis.set(
      `sluice:job:${jobId}`,
      JSON.stringify({ jobId, status: 'sealed', tenant: 'alice', model: 'gpt-4o-mini', total: 40 }),
    );
    // Two transactions, as two upload chunks are written.
    const producer = kafka.producer({ transactionalId: uniqueName('lag-upload') });
    await producer.connect();
    for (let chunk = 0; chunk < 2; chunk++) {
      const txn = await producer.transaction();
      await txn.send({
        topic: lane,
        messages: Array.from({ length: 20 }, (_, j) => {
          const i = chunk * 20 + j;
          const request: PromptRequest = {
            jobId,
            promptId: `${jobId}:${i}`,
            rowIndex: i,
            tenant: 'alice',
            provider,
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `Row ${i}` }],
            parameters: {
              temperature: 0,
              topP: null,
              maxTokens: 8,
              responseFormat: null,
              stop: null,
              seed: null,
              extra: null,
            },
            attempt: 0,
            customId: `c${i}`,
            priority: 0,
            submittedAt: Date.now(),
            source: 'http',
          };
          return { key: jobId, partition: i % 4, value: codecs.promptRequest.encodeSync(request) };
        }),
      });
      await txn.commit();
    }
    await producer.disconnect();
    const groupId = uniqueName('dispatcher');
    const d = new Dispatcher({
      kafka,
      codecs,
      redis,
      limiter: new RateLimiter({ redis, keyPrefix: uniqueName('rl') }),
      provider,
      adapter: createOpenAIAdapter({ apiKey: 'sk-lag', baseURL: `${sim.url}/v1` }),
      keyId: 'sk-lag',
      limits: () => ({}),
      groupId,
      log,
    });
    await d.start();
    const admin = kafka.admin();
    await admin.connect();
    try {
      await collectOutcomes({ kafka, codecs }, jobId, 40, 60_000);
      const ends = new Map((await admin.fetchTopicOffsets(lane)).map((o) => [o.partition, Number(o.high)]));
      const lag = async () => {
        const [committed] = await admin.fetchOffsets({ groupId, topics: [lane] });
        return committed!.partitions.map((p) => ends.get(p.partition)! - Number(p.offset));
      };
      const zero = await waitFor(
        'lag 0 on every partition',
        async () => ((await lag()).every((l) => l === 0) ? true : undefined),
        {
          timeoutMs: 10_000,
          intervalMs: 200,
        },
      ).catch(async () => lag());
      expect(zero).toBe(true);
    } finally {
      await admin.disconnect();
      await d.stop();
    }
  }, 90_000);
});
