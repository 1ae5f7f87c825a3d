import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createAnnouncer, type Announcer } from '@sluice/announcer';
import { laneLoadKey, releasePlacement } from '@sluice/job-store';
import { createKafka } from '@sluice/kafka';
import { createGcsObjectStore, readJobIndex, type ObjectStore } from '@sluice/object-store';
import { createSchemaCodecs, type JobEvent, type SchemaCodecs } from '@sluice/schemas';
import { FaultProxy, proxyAddresses, stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sink, type SinkOptions } from '../src/sink.js';
import { makeJob, outcome, produceOutcomes, publishJob, readOutputs, subscribe } from './helpers.js';

const s = stackSettings();
const log = pino({ level: process.env['SINK_LOG'] ?? 'warn' });
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('sink-test'), logger: log });
const redis = new Redis(s.redisUrl);
let codecs: SchemaCodecs;
let store: ObjectStore;
let announcer: Announcer;
const topic = uniqueName('jobs-finished');

beforeAll(async () => {
  codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
  const gcs = createGcsObjectStore({
    bucket: uniqueName('results'),
    apiEndpoint: s.gcsEndpoint,
    projectId: s.pubsubProject,
  });
  await gcs.ensureBucket();
  store = gcs;
  announcer = createAnnouncer({
    pubsub: { projectId: s.pubsubProject, apiEndpoint: s.pubsubEmulatorHost, defaultTopic: topic, createTopics: true },
  });
  await kafka.ensureTopics([
    { topic: 'sluice.jobs', partitions: 6, config: { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '60000' } },
  ]);
});

afterAll(async () => {
  await announcer?.close();
  redis.disconnect();
});

function sink(tenant: string, over: Partial<SinkOptions> = {}) {
  return new Sink({
    kafka,
    codecs,
    redis,
    store,
    announcer,
    log,
    groupId: uniqueName('sink'),
    tenants: [tenant],
    partRecords: 100,
    flushMs: 300,
    sweepMs: 500,
    ...over,
  });
}

async function finalEvent(jobId: string, timeoutMs = 60_000): Promise<JobEvent> {
  const consumer = kafka.consumer({ groupId: uniqueName('jobs-reader') });
  let found: JobEvent | undefined;
  await consumer.connect();
  await consumer.subscribe({ topic: 'sluice.jobs', fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const e = await codecs.jobEvent.decode(message.value!);
      if (e.job.jobId === jobId && e.type === 'finalized') found = e;
    },
  });
  try {
    return await waitFor(`the finalized event of ${jobId}`, () => found, { timeoutMs });
  } finally {
    await consumer.disconnect();
  }
}

describe('sink (real Kafka, Redis, GCS and Pub/Sub emulators)', () => {
  it('writes exactly one record per prompt, errors apart, then the manifest, one announcement and the final state', async () => {
    const tenant = uniqueName('t');
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const job = makeJob({ tenant, total: 1_000, accepted: 990, invalid: 10 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 2 }]);
    const all = Array.from({ length: 1_000 }, (_, i) =>
      outcome(job, i, i < 10 ? 'invalid' : i % 50 === 0 ? 'failed' : 'ok'),
    );
    // Redeliveries: 150 outcomes a second time, some as a different, later outcome.
    const again = all.slice(200, 350).map((o) => ({
      ...o,
      status: 'failed',
      result: null,
      error: { code: 'X', message: 'late duplicate', lineNumber: null },
    }));
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(kafka, codecs, job, all.slice(0, 600));
      await produceOutcomes(kafka, codecs, job, again);
      await produceOutcomes(kafka, codecs, job, all.slice(600));
      const event = await finalEvent(job.jobId);
      expect(event.job.status).toBe('completed_with_errors');
      expect(event.job.manifestUri).toBe(store.uri(`${job.jobId}/manifest.json`));

      const out = (await readOutputs(store, job.jobId))!;
      const rows = [...out.results, ...out.errors].map((l) => l['row_index'] as number);
      expect(rows).toHaveLength(1_000);
      expect(new Set(rows).size).toBe(1_000);
      expect(out.errors.some((l) => (l['error'] as { message: string }).message === 'late duplicate')).toBe(false);
      expect(out.results).toHaveLength(971); // rows 10-999 but the 19 multiples of 50
      expect(out.results[0]).toMatchObject({
        custom_id: expect.stringMatching(/^c\d+$/),
        response: { status_code: 200 },
        error: null,
      });
      expect(out.errors.filter((l) => (l['error'] as { code: string }).code === 'INPUT_INVALID_JSON')).toHaveLength(10);
      expect(out.manifest).toMatchObject({
        status: 'completed_with_errors',
        counts: { total: 1_000, succeeded: 971, failed: 19, invalid: 10, cancelled: 0 },
        tokens: { prompt: 9_710, completion: 4_855, total: 14_565 },
      });
      expect(out.manifest['estimatedCostUsd']).toBeCloseTo((9_710 * 0.15 + 4_855 * 0.6) / 1e6, 8);
      expect(out.manifest.outputs.results.length).toBeGreaterThan(2); // parts of at most 100 records
      // No left-overs: every object is a listed part, an index or the manifest.
      const listed = new Set([...out.manifest.outputs.results, ...out.manifest.outputs.errors].map((f) => f.name));
      expect(
        out.objects.filter(
          (n) =>
            !n.includes('/_index/') &&
            !n.includes('/_rollup/') &&
            !n.endsWith('manifest.json') &&
            !n.endsWith('announcement.json') &&
            !listed.has(n),
        ),
      ).toEqual([]);

      await waitFor(
        'one announcement',
        () => (sub.messages.some((m) => m.attributes['jobId'] === job.jobId) ? true : undefined),
        {
          timeoutMs: 20_000,
        },
      );
      await new Promise((r) => setTimeout(r, 1_000));
      const mine = sub.messages.filter((m) => m.attributes['jobId'] === job.jobId);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.attributes).toEqual({ jobId: job.jobId, tenant, status: 'completed_with_errors' });
      const view = JSON.parse((await redis.get(`sluice:job:${job.jobId}`))!) as { status: string; finalizedAt: number };
      expect(view.status).toBe('completed_with_errors');
      expect(await redis.hgetall(`sluice:job:${job.jobId}:counts`)).toMatchObject({
        succeeded: '971',
        written: '1000',
      });
    } finally {
      await sk.stop();
      await sub.close();
    }
  }, 120_000);

  // Issue 19: a job of a million prompts has thousands of parts; reading its index cost one GET per
  // part on every writer start and every GET /results.
  it("reads a job's index as one roll-up and the few indexes after it, and a restart from it writes no row twice", async () => {
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, total: 2_000, accepted: 2_000 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 2 }]);
    const all = Array.from({ length: 2_000 }, (_, i) => outcome(job, i));
    const small = { partRecords: 20, rollupParts: 8 };
    let sk = sink(tenant, small);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(kafka, codecs, job, all.slice(0, 1_200), 2);
      const rowsIn = async () =>
        (await readJobIndex(store, '', job.jobId)).parts.reduce((n, p) => n + p.counts.succeeded, 0);
      await waitFor('1,200 rows committed', async () => ((await rowsIn()) >= 1_200 ? true : undefined), {
        timeoutMs: 60_000,
      });
      await sk.stop();
      const indexes = (await store.list(`${job.jobId}/_index/`)).length;
      expect(indexes).toBeGreaterThanOrEqual(60); // parts of at most 20 records
      // The two newest roll-ups are kept, the older deleted.
      expect((await store.list(`${job.jobId}/_rollup/`)).length).toBe(2);
      const index = await readJobIndex(store, '', job.jobId, { rows: true });
      expect(index.parts).toHaveLength(indexes);
      expect(index.rows!.size).toBe(1_200);
      expect(index.rollupSeq).toBeGreaterThanOrEqual(7);
      // A roll-up read, and at most the indexes of the last 8 parts after it: not one GET a part.
      expect(index.requests.gets).toBeLessThanOrEqual(1 + 8);
      expect(index.requests.lists).toBe(2);

      // A restart goes on from the roll-up: rows it holds, delivered again, are not written twice.
      sk = sink(tenant, small);
      await sk.start();
      await produceOutcomes(kafka, codecs, job, [...all.slice(0, 300), ...all.slice(1_200)], 2);
      await finalEvent(job.jobId);
      const out = (await readOutputs(store, job.jobId))!;
      const rows = out.results.map((l) => l['row_index'] as number);
      expect(rows).toHaveLength(2_000);
      expect(new Set(rows).size).toBe(2_000);
      expect(out.manifest.counts).toMatchObject({ total: 2_000, succeeded: 2_000 });
    } finally {
      await sk.stop();
    }
  }, 120_000);

  // Regression: a sink that died after announcing a job and before its finalized event announced
  // it again when it started over. The note beside the manifest says "announcing" and the
  // witness subscription has the announcement: the restarted sink finalizes without announcing.
  it('does not announce again a job announced before a crash that came before its finalized event', async () => {
    const tenant = uniqueName('t');
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const job = makeJob({ tenant, total: 20, accepted: 20 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    // What the crashed sink did: the witness opened, the note written, the announcement sent.
    const witness = announcer.witness(job.jobId, {});
    await witness.open();
    await store.put(`${job.jobId}/announcement.json`, JSON.stringify({ state: 'announcing' }), { ifAbsent: true });
    const sent = {
      jobId: job.jobId,
      tenant,
      status: 'completed',
      manifestUri: store.uri(`${job.jobId}/manifest.json`),
      counts: { total: 20, succeeded: 20, failed: 0, cancelled: 0 },
      finishedAt: new Date().toISOString(),
    };
    await announcer.announce(sent, {});
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(
        kafka,
        codecs,
        job,
        Array.from({ length: 20 }, (_, i) => outcome(job, i)),
      );
      const event = await finalEvent(job.jobId);
      expect(event.job.status).toBe('completed');
      await new Promise((r) => setTimeout(r, 2_000)); // a second announcement would arrive now
      expect(sub.messages.filter((m) => m.attributes['jobId'] === job.jobId)).toHaveLength(1);
      expect(JSON.parse((await store.get(`${job.jobId}/announcement.json`))!.toString())).toMatchObject({
        state: 'announced',
      });
    } finally {
      await sk.stop();
      await sub.close();
    }
  }, 120_000);

  it('announces a job whose note says "announcing" but whose witness never saw it (a crash before the send)', async () => {
    const tenant = uniqueName('t');
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const job = makeJob({ tenant, total: 5, accepted: 5 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    await announcer.witness(job.jobId, {}).open();
    await store.put(`${job.jobId}/announcement.json`, JSON.stringify({ state: 'announcing' }), { ifAbsent: true });
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(
        kafka,
        codecs,
        job,
        Array.from({ length: 5 }, (_, i) => outcome(job, i)),
      );
      await finalEvent(job.jobId);
      await waitFor('the announcement', () => sub.messages.find((m) => m.attributes['jobId'] === job.jobId), {
        timeoutMs: 20_000,
      });
      await new Promise((r) => setTimeout(r, 1_000));
      expect(sub.messages.filter((m) => m.attributes['jobId'] === job.jobId)).toHaveLength(1);
    } finally {
      await sk.stop();
      await sub.close();
    }
  }, 120_000);

  // Regression: every open job held one of the sink's writer slots for as long as it stayed open,
  // so that as many jobs never sealed as there are slots stalled every new job.
  it('gives the slot of an idle open job to a job waiting for one, and writes the idle job once it is sealed', async () => {
    const tenant = uniqueName('t');
    const sk = sink(tenant, { maxActiveJobs: 2, idleWriterMs: 1_000 });
    const [a, b] = [makeJob({ tenant, status: 'open' }), makeJob({ tenant, status: 'open' })];
    const c = makeJob({ tenant, total: 20, accepted: 20 });
    for (const j of [a, b, c]) await kafka.ensureTopics([{ topic: j.resultsTopic, partitions: 1 }]);
    await sk.start();
    try {
      await publishJob(kafka, codecs, a, 'created');
      await publishJob(kafka, codecs, b, 'created');
      await waitFor('both slots taken', () => (sk.activeJobs.length === 2 ? true : undefined), { timeoutMs: 20_000 });
      await publishJob(kafka, codecs, c, 'sealed');
      await produceOutcomes(
        kafka,
        codecs,
        c,
        Array.from({ length: 20 }, (_, i) => outcome(c, i)),
      );
      expect((await finalEvent(c.jobId, 30_000)).job.status).toBe('completed');
      expect(sk.parked).toBeGreaterThanOrEqual(1);
      // The open job parked meanwhile is written once it has its outcomes and is sealed.
      await produceOutcomes(
        kafka,
        codecs,
        a,
        Array.from({ length: 5 }, (_, i) => outcome(a, i)),
      );
      await publishJob(
        kafka,
        codecs,
        { ...a, status: 'sealed', total: 5, accepted: 5, updatedAt: Date.now() },
        'sealed',
      );
      expect((await finalEvent(a.jobId, 30_000)).job.status).toBe('completed');
      const out = (await readOutputs(store, a.jobId))!;
      expect(out.results.map((l) => l['row_index']).sort()).toEqual([0, 1, 2, 3, 4]);
    } finally {
      await sk.stop();
    }
  }, 120_000);

  // Regression: the job writers' groups committed nothing (the sink's progress could not be seen
  // as lag) and a group per job and writer start piled up in the broker's group list.
  it("shows a job's progress as its writer group's committed offsets, and leaves no group behind once done", async () => {
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, total: 300, accepted: 300, invalid: 0 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 2 }]);
    const all = Array.from({ length: 300 }, (_, i) => outcome(job, i, 'ok'));
    const admin = kafka.admin();
    await admin.connect();
    const groupsOfJob = async () =>
      (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`sluice-sink.${job.jobId}.`));
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(kafka, codecs, job, all.slice(0, 200));
      const committed = await waitFor(
        'the writer group committing past its parts',
        async () => {
          const [group] = await groupsOfJob();
          if (!group) return undefined;
          const offsets = await admin.fetchOffsets({ groupId: group, topics: [job.resultsTopic] });
          const sum = offsets[0]!.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
          return sum >= 100 ? sum : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(committed).toBeLessThanOrEqual(200);
      await produceOutcomes(kafka, codecs, job, all.slice(200));
      await finalEvent(job.jobId);
      await waitFor(
        'no writer group of the job left',
        async () => ((await groupsOfJob()).length === 0 ? true : undefined),
        {
          timeoutMs: 20_000,
          intervalMs: 200,
        },
      );
    } finally {
      await sk.stop();
      await admin.disconnect();
    }
  }, 120_000);

  // Regression: placement released a partition's load only on cancel, never on completion, so new
  // jobs were placed behind finished backfills.
  it('frees the partitions of a job it finalizes for new jobs, once, whoever releases it too', async () => {
    const tenant = uniqueName('t');
    const provider = uniqueName('lane');
    const job = makeJob({ tenant, provider, partitions: [2, 5], total: 50, accepted: 50, invalid: 0 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    // This job and one other on partition 2; this one alone on 5.
    await redis.zadd(laneLoadKey(provider), 2, '2', 1, '5', 0, '7');
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(
        kafka,
        codecs,
        job,
        Array.from({ length: 50 }, (_, i) => outcome(job, i, 'ok')),
      );
      await finalEvent(job.jobId);
      await waitFor('the load released', async () =>
        (await redis.zscore(laneLoadKey(provider), '5')) === '0' ? true : undefined,
      );
      expect(await redis.zrange(laneLoadKey(provider), 0, -1, 'WITHSCORES')).toEqual(['5', '0', '7', '0', '2', '1']);
      // A cancel racing the finalization (or a second finalization) takes nothing off again.
      expect(await releasePlacement(redis, provider, job.jobId, job.partitions)).toBe(false);
      expect(await redis.zscore(laneLoadKey(provider), '2')).toBe('1');
    } finally {
      await sk.stop();
      await redis.del(laneLoadKey(provider));
    }
  }, 120_000);

  // Regression: completion counted rows, not rows of [0, total): a job numbered from 1 completed
  // with row 0 missing, and a row of 2^32 + n stood in for row n in the bitset.
  it('completes only when every row of [0, total) is written: rows outside the job count for nothing', async () => {
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, total: 50, accepted: 50 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    const sk = sink(tenant);
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      // Rows 1-50 (numbered from 1: 50 is past the total) and one far past 2^32.
      const fromOne = Array.from({ length: 50 }, (_, i) => outcome(job, i + 1));
      await produceOutcomes(kafka, codecs, job, [...fromOne, outcome(job, 2 ** 32 + 0)]);
      await new Promise((r) => setTimeout(r, 3_000)); // several flushes and sweeps
      expect((await readOutputs(store, job.jobId))?.manifest ?? null).toBeNull();
      await produceOutcomes(kafka, codecs, job, [outcome(job, 0)]);
      await finalEvent(job.jobId);
      const out = (await readOutputs(store, job.jobId))!;
      const rows = out.results.map((l) => l['row_index'] as number).sort((a, b) => a - b);
      expect(rows).toEqual(Array.from({ length: 50 }, (_, i) => i));
      expect(out.manifest).toMatchObject({ counts: { total: 50, succeeded: 50 } });
    } finally {
      await sk.stop();
    }
  }, 90_000);

  it('picks up a job created while it runs within 5 s, without a rebalance of its group', async () => {
    const tenant = uniqueName('t');
    const sk = sink(tenant);
    await sk.start();
    try {
      await waitFor('the sink to join', () => (sk.joins >= 1 ? true : undefined), { timeoutMs: 30_000 });
      const jobs = [makeJob({ tenant, total: 50 }), makeJob({ tenant, total: 50 })];
      for (const job of jobs) {
        await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
        const created = Date.now();
        await publishJob(kafka, codecs, job, 'sealed');
        await produceOutcomes(
          kafka,
          codecs,
          job,
          Array.from({ length: 50 }, (_, i) => outcome(job, i)),
        );
        await waitFor(`${job.jobId} finalized`, () => (sk.finalized.includes(job.jobId) ? true : undefined), {
          timeoutMs: 5_000,
        });
        expect(Date.now() - created).toBeLessThan(5_000);
      }
      expect(sk.joins).toBe(1);
    } finally {
      await sk.stop();
    }
  }, 60_000);

  it('closes prompts missing past the deadline with PIPELINE_TIMEOUT, so the job does not stay open', async () => {
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, total: 10 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    const sk = sink(tenant, { pipelineTimeoutMs: 1_500 });
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(
        kafka,
        codecs,
        job,
        [0, 1, 2, 3, 5, 6, 7, 9].map((i) => outcome(job, i)),
      );
      const event = await finalEvent(job.jobId, 30_000);
      expect(event.job.status).toBe('completed_with_errors');
      const out = (await readOutputs(store, job.jobId))!;
      expect(out.errors.map((l) => [l['row_index'], (l['error'] as { code: string }).code])).toEqual([
        [4, 'PIPELINE_TIMEOUT'],
        [8, 'PIPELINE_TIMEOUT'],
      ]);
      expect(out.results).toHaveLength(8);
    } finally {
      await sk.stop();
    }
  }, 60_000);

  it('finalizes a cancelled job as cancelled and deletes its results topic after the retention period', async () => {
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, status: 'cancelled', accepted: 20, total: null });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 1 }]);
    const sk = sink(tenant, { retentionMs: 1_000 });
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'cancelled');
      await produceOutcomes(
        kafka,
        codecs,
        job,
        Array.from({ length: 20 }, (_, i) =>
          i < 5
            ? outcome(job, i)
            : {
                ...outcome(job, i, 'failed'),
                status: 'cancelled',
                error: { code: 'JOB_CANCELLED', message: 'cancelled', lineNumber: null },
              },
        ),
      );
      const event = await finalEvent(job.jobId, 30_000);
      expect(event.job.status).toBe('cancelled');
      const out = (await readOutputs(store, job.jobId))!;
      expect(out.manifest.counts).toMatchObject({ total: 20, succeeded: 5, cancelled: 15 });
      const admin = kafka.admin();
      await admin.connect();
      try {
        await waitFor(
          'the results topic to be deleted',
          async () => (!(await admin.listTopics()).includes(job.resultsTopic) ? true : undefined),
          { timeoutMs: 20_000, intervalMs: 250 },
        );
      } finally {
        await admin.disconnect();
      }
    } finally {
      await sk.stop();
    }
  }, 60_000);
});

describe('sink behind a TCP proxy (real Kafka through the fault proxy)', () => {
  it('replaces consumers whose fetches stopped and still writes every prompt exactly once', async () => {
    const { listen, target, brokers } = proxyAddresses();
    const proxy = new FaultProxy(listen, target);
    await proxy.start();
    const viaProxy = createKafka({ brokers: [brokers], clientId: uniqueName('sink-proxy'), logger: log });
    const tenant = uniqueName('t');
    const job = makeJob({ tenant, total: 600, accepted: 600, invalid: 0 });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 2 }]);
    const all = Array.from({ length: 600 }, (_, i) => outcome(job, i));
    const sk = sink(tenant, { kafka: viaProxy, consumerStallMs: 2_000 });
    await sk.start();
    try {
      await publishJob(kafka, codecs, job, 'sealed');
      await produceOutcomes(kafka, codecs, job, all.slice(0, 300), 2);
      await waitFor(
        '300 written',
        async () => ((await redis.hget(`sluice:job:${job.jobId}:counts`, 'written')) === '300' ? true : undefined),
        { timeoutMs: 30_000 },
      );
      // The link goes silent: fetches get no answer (kafkajs would wait out its 30 s request timeout).
      proxy.mode = 'blackhole';
      await produceOutcomes(kafka, codecs, job, all.slice(300), 2);
      await waitFor('a consumer replaced', () => (sk.consumerReplacements > 0 ? true : undefined), {
        timeoutMs: 20_000,
      });
      proxy.mode = 'pass';
      const event = await finalEvent(job.jobId);
      expect(event.job.status).toBe('completed');
      const out = (await readOutputs(store, job.jobId))!;
      const rows = out.results.map((l) => l['row_index'] as number);
      expect(rows).toHaveLength(600);
      expect(new Set(rows).size).toBe(600);
    } finally {
      proxy.mode = 'pass';
      await sk.stop();
      await proxy.stop();
    }
  }, 120_000);
});
