import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createKafka, type SluiceKafka } from '@sluice/kafka';
import { createSchemaCodecs, type PromptOutcome, type PromptRequest, type SchemaCodecs } from '@sluice/schemas';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { buildApp } from '../src/app.js';
import { hashApiKey, loadConfig, type IngestConfig } from '../src/config.js';
import type { ResultsAccess } from '../src/routes/v1/results.js';
import { JobService } from '../src/services/jobs.js';

export interface TestApi {
  app: FastifyInstance;
  jobs: JobService;
  config: IngestConfig;
  kafka: SluiceKafka;
  redis: Redis;
  codecs: SchemaCodecs;
  /** A provider name of this test only, so its lane topic holds only this test's prompts. */
  provider: string;
  keys: { alice: string; bob: string };
  auth(tenant: 'alice' | 'bob'): { authorization: string };
  close(): Promise<void>;
}

/**
 * The ingest API wired to the real local stack, with two tenants and a lane of its own.
 * Close it in afterAll.
 */
export async function createTestApi(
  overrides: Record<string, string> = {},
  o: {
    laneTopicConfig?: Record<string, string>;
    results?: ResultsAccess;
    /** The tenants the keys of alice and bob name. @default alice, bob */
    tenantNames?: { alice: string; bob: string };
    /** The window of the tenants' upload rate. @default 60000 */
    uploadRateWindowMs?: number;
  } = {},
): Promise<TestApi> {
  const s = stackSettings();
  const provider = `t${randomBytes(4).toString('hex')}`;
  const keys = { alice: `sk-alice-${randomBytes(8).toString('hex')}`, bob: `sk-bob-${randomBytes(8).toString('hex')}` };
  const config = loadConfig({
    SLUICE_KAFKA_BROKERS: s.kafkaBrokers.join(','),
    SLUICE_REDIS_URL: s.redisUrl,
    SLUICE_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
    SLUICE_API_KEYS: `${o.tenantNames?.alice ?? 'alice'}:${hashApiKey(keys.alice)},${o.tenantNames?.bob ?? 'bob'}:${hashApiKey(keys.bob)}`,
    // Jobs of alice and bob that tests leave open stay in the stack's Redis from run to run: the
    // quotas are tested on tenants of their own (tenants.test.ts).
    SLUICE_TENANTS: JSON.stringify({ '*': { maxOpenJobs: 1_000_000, maxOpenRows: 1_000_000_000 } }),
    SLUICE_MODELS: JSON.stringify({ [provider]: ['model-a', 'model-b'] }),
    SLUICE_LANE_PARTITIONS: '4',
    SLUICE_UPLOAD_CHUNK_ROWS: '1000',
    // Chunks of one size, as the tests count them (upload-chunks.test.ts tests the growth).
    SLUICE_UPLOAD_FIRST_CHUNK_ROWS: overrides['SLUICE_UPLOAD_CHUNK_ROWS'] ?? '1000',
    ...overrides,
  });
  const log = pino({ level: 'warn' });
  const redis = new Redis(s.redisUrl, { maxRetriesPerRequest: 2 });
  const kafka = createKafka({ brokers: config.kafkaBrokers, clientId: uniqueName('ingest-test'), logger: log });
  const codecs = await createSchemaCodecs({ registryUrl: config.schemaRegistryUrl });
  // A lane topic made beforehand with settings of the test's (as an older deployment's may be).
  if (o.laneTopicConfig)
    await kafka.ensureTopics([
      { topic: `sluice.requests.${provider}`, partitions: config.lanePartitions, config: o.laneTopicConfig },
    ]);
  const jobs = new JobService({
    kafka,
    redis,
    codecs,
    config,
    log,
    uploadLockMs: 2_000,
    viewCheckMs: 500,
    uploadRateWindowMs: o.uploadRateWindowMs,
  });
  await jobs.start();
  const app = await buildApp({ config, jobs, results: o.results, logger: false });
  return {
    app,
    jobs,
    config,
    kafka,
    redis,
    codecs,
    provider,
    keys,
    auth: (tenant) => ({ authorization: `Bearer ${keys[tenant]}` }),
    close: async () => {
      await app.close();
      await jobs.close();
      redis.disconnect();
    },
  };
}

/**
 * Reads, with read_committed isolation, every record of `topic` whose key is `jobId`, until
 * `expected` are in and nothing more arrives for a moment.
 */
export async function readJobRecords<T>(
  kafka: SluiceKafka,
  topic: string,
  jobId: string,
  expected: number,
  decode: (b: Buffer) => Promise<T>,
  timeoutMs = 60_000,
): Promise<T[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxBytesPerPartition: 8 * 1024 * 1024 });
  const out: T[] = [];
  let lastAt = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (m.key?.toString() === jobId && m.value) out.push(await decode(m.value));
      }
      lastAt = Date.now();
    },
  });
  try {
    await waitFor(
      `${expected} records of ${jobId} on ${topic}`,
      () => (out.length >= expected && Date.now() - lastAt > 500 ? true : undefined),
      {
        timeoutMs,
        intervalMs: 100,
      },
    );
  } finally {
    await consumer.disconnect();
  }
  return out;
}

export const readPrompts = (api: TestApi, jobId: string, expected: number) =>
  readJobRecords<PromptRequest>(api.kafka, `sluice.requests.${api.provider}`, jobId, expected, (b) =>
    api.codecs.promptRequest.decode(b),
  );

export const readOutcomes = (api: TestApi, jobId: string, expected: number) =>
  readJobRecords<PromptOutcome>(api.kafka, `sluice.results.${jobId}`, jobId, expected, (b) =>
    api.codecs.promptOutcome.decode(b),
  );

export async function createJob(api: TestApi, body: Record<string, unknown> = {}, tenant: 'alice' | 'bob' = 'alice') {
  const res = await api.app.inject({
    method: 'POST',
    url: '/v1/jobs',
    headers: api.auth(tenant),
    payload: { provider: api.provider, model: 'model-a', ...body },
  });
  if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body}`);
  return res.json() as { id: string; status: string; kafka: { partitions: number[]; tenant: string } };
}
