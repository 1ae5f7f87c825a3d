import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { viewReadyKey } from '@sluice/job-store';
import {
  createKafka,
  deadLetterHeaders,
  deadLetterTopic,
  promptHeaders as headers,
  type SluiceKafka,
} from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { createOpenAIAdapter } from '@sluice/providers';
import { RateLimiter } from '@sluice/rate-limit';
import { createSchemaCodecs, type PromptRequest, type SchemaCodecs } from '@sluice/schemas';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DelayProcessor } from '../../delay/src/delay-processor.js';
import { Dispatcher } from '../src/dispatcher.js';
import { collectOutcomes, seedLaneJob } from './helpers.js';

const s = stackSettings();
const log = pino({ level: process.env['DISPATCH_LOG'] ?? 'silent' });
const kafka: SluiceKafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('dl-test'), logger: log });
const redis = new Redis(s.redisUrl);
let codecs: SchemaCodecs;
let sim: ProviderSimServer;

beforeAll(async () => {
  codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
  sim = await startProviderSim({
    config: {
      seed: 5,
      latency: { baseMs: 5, perTokenMs: 0, sigma: 0 },
      keys: { 'sk-dl': { dialect: 'openai', limits: {} } },
    },
  });
  // As after the API started: the view holds every job, so a job missing from it does not exist.
  await redis.set(viewReadyKey, String(Date.now()));
});
afterAll(async () => {
  await sim?.close();
  redis.disconnect();
});

interface Letter {
  reason: string;
  target: string;
  source: string;
  jobId: string | undefined;
}

/** The dead letters `mine` picks, once `expected` are in. */
async function deadLetters(mine: (l: Letter) => boolean, expected: number): Promise<Letter[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('dl-reader') });
  const out: Letter[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic: deadLetterTopic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const h = (n: string) => message.headers?.[n]?.toString();
      const letter = {
        reason: h(deadLetterHeaders.reason)!,
        target: h(deadLetterHeaders.target) ?? '',
        source: h(deadLetterHeaders.source) ?? '',
        jobId: message.key?.toString(),
      };
      if (mine(letter)) out.push(letter);
    },
  });
  try {
    await waitFor(`${expected} dead letters`, () => (out.length >= expected ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    await new Promise((r) => setTimeout(r, 1_000)); // more than expected would arrive now
  } finally {
    await consumer.disconnect();
  }
  return out;
}

function request(over: Partial<PromptRequest> & { jobId: string; rowIndex: number }): PromptRequest {
  return {
    promptId: `${over.jobId}:${over.rowIndex}`,
    tenant: 'alice',
    provider: 'x',
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: `Classify headline ${over.rowIndex}.` }],
    parameters: { temperature: 0, topP: null, maxTokens: 8, responseFormat: null, stop: null, seed: null, extra: null },
    attempt: 0,
    customId: null,
    priority: 0,
    submittedAt: Date.now(),
    source: 'kafka',
    ...over,
  };
}

async function committedLag(groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [ends, [group]] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    let lag = 0;
    for (const p of ends) {
      const c = Number(group!.partitions.find((x) => x.partition === p.partition)?.offset ?? -1);
      lag += Number(p.high) - (c < 0 ? 0 : c);
    }
    return lag;
  } finally {
    await admin.disconnect();
  }
}

describe('records the pipeline cannot take end as dead letters (real Kafka, Redis and registry)', () => {
  it('a lane record for an unknown job, another tenant, a row out of range, an unserved model or no schema is a dead letter, not a call', async () => {
    const { provider, jobId } = await seedLaneJob({ kafka, codecs, redis }, 10);
    const lane = `sluice.requests.${provider}`;
    // A job the view knows whose results topic is gone (deleted after retention, say).
    const goneJob = `job_${randomBytes(6).toString('hex')}`;
    await redis.set(
      `sluice:job:${goneJob}`,
      JSON.stringify({ jobId: goneJob, status: 'sealed', tenant: 'alice', model: 'gpt-4o-mini', total: 1 }),
    );
    const bad = [
      request({ jobId: `job_${randomBytes(6).toString('hex')}`, rowIndex: 0 }), // JOB_UNKNOWN
      request({ jobId, rowIndex: 3, tenant: 'mallory' }), // TENANT_MISMATCH
      request({ jobId, rowIndex: 10 }), // ROW_OUT_OF_RANGE (total 10)
      request({ jobId, rowIndex: -1 }), // ROW_OUT_OF_RANGE
      request({ jobId, rowIndex: 4, model: 'gpt-unserved' }), // MODEL_NOT_ALLOWED
      request({ jobId: goneJob, rowIndex: 0 }), // called, then TOPIC_MISSING
    ];
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: lane,
      messages: [
        ...bad.map((r, i) => ({ key: r.jobId, partition: i % 4, value: codecs.promptRequest.encodeSync(r) })),
        { key: jobId, partition: 1, value: Buffer.from('{"not": "avro"}') }, // UNDECODABLE
      ],
    });
    await producer.disconnect();
    const groupId = uniqueName('dispatcher');
    const d = new Dispatcher({
      kafka,
      codecs,
      redis,
      limiter: new RateLimiter({ redis, keyPrefix: uniqueName('rl') }),
      provider,
      adapter: createOpenAIAdapter({ apiKey: 'sk-dl', baseURL: `${sim.url}/v1` }),
      keyId: 'sk-dl',
      limits: () => ({}),
      groupId,
      log,
    });
    const callsBefore = sim.sim.ledger.stats().find((k) => k.key === 'sk-dl')?.requests ?? 0;
    await d.start();
    try {
      const { all, unique } = await collectOutcomes({ kafka, codecs }, jobId, 10, 60_000);
      const letters = await deadLetters((l) => l.source.startsWith(`${lane}/`), 7);
      expect(letters.map((l) => l.reason).sort()).toEqual(
        [
          'JOB_UNKNOWN',
          'MODEL_NOT_ALLOWED',
          'ROW_OUT_OF_RANGE',
          'ROW_OUT_OF_RANGE',
          'TENANT_MISMATCH',
          'TOPIC_MISSING',
          'UNDECODABLE',
        ].sort(),
      );
      expect(letters.find((l) => l.reason === 'TOPIC_MISSING')?.target).toBe(`sluice.results.${goneJob}`);
      // The real job got its ten rows and nothing else: no row of another tenant, none out of range.
      expect(all.length).toBe(10);
      expect([...unique].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `${jobId}:${i}`).sort());
      // Calls: the ten rows and the one whose outcome had nowhere to go; no call for the rest.
      const calls = (sim.sim.ledger.stats().find((k) => k.key === 'sk-dl')?.requests ?? 0) - callsBefore;
      expect(calls).toBe(11);
      // Every partition moved past them.
      await waitFor('the lane committed to its end', async () =>
        (await committedLag(groupId, lane)) === 0 ? true : undefined,
      );
    } finally {
      await d.stop();
    }
  }, 120_000);

  it('a delayed prompt whose lane is gone or not named is a dead letter, and the delay partition moves on', async () => {
    const { provider, jobId } = await seedLaneJob({ kafka, codecs, redis }, 0);
    const gone = `sluice.requests.gone${randomBytes(4).toString('hex')}`;
    const tier = 'sluice.delay.5s';
    // The stack's delay group, as every test's: a group of its own would move every delayed
    // record of earlier tests again.
    const delay = new DelayProcessor({ kafka, log });
    await delay.start();
    try {
      const producer = kafka.producer();
      await producer.connect();
      const value = codecs.promptRequest.encodeSync(request({ jobId, rowIndex: 0 }));
      await producer.send({
        topic: tier,
        messages: [
          { key: jobId, value, headers: { [headers.dueAt]: '0', [headers.lane]: gone, [headers.lanePartition]: '0' } },
          { key: jobId, value, headers: { [headers.dueAt]: '0' } },
          {
            key: jobId,
            value,
            headers: {
              [headers.dueAt]: '0',
              [headers.lane]: `sluice.requests.${provider}`,
              [headers.lanePartition]: '2',
            },
          },
        ],
      });
      await producer.disconnect();
      const letters = await deadLetters((l) => l.jobId === jobId, 2);
      expect(letters.map((l) => [l.reason, l.target, l.source.split('/')[0]])).toEqual([
        ['LANE_UNKNOWN', gone, tier],
        ['LANE_UNKNOWN', '', tier],
      ]);
      // The record behind them reached its lane.
      const consumer = kafka.consumer({ groupId: uniqueName('lane-reader') });
      let seen = 0;
      await consumer.connect();
      await consumer.subscribe({ topic: `sluice.requests.${provider}`, fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => void (message.key?.toString() === jobId && seen++) });
      await waitFor('the good delayed record on its lane', () => (seen === 1 ? true : undefined), {
        timeoutMs: 30_000,
      });
      await consumer.disconnect();
    } finally {
      await delay.stop();
    }
  }, 120_000);
});
