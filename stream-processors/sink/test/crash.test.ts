import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { createGcsObjectStore } from '@sluice/object-store';
import { createSchemaCodecs, type PromptOutcome } from '@sluice/schemas';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { makeJob, outcome, produceOutcomes, publishJob, readOutputs, subscribe } from './helpers.js';

const s = stackSettings();
const log = pino({ level: 'warn' });
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('sink-crash'), logger: log });

/**
 * The sink as its own process, killed with SIGKILL in the middle of a job and started again: the
 * final output holds every prompt exactly once, and the job is announced once.
 */
describe('kill -9 of the sink mid-job', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  it('ends with exactly N records, no duplicates, and one announcement', async () => {
    const codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
    const tenant = uniqueName('t');
    const bucket = uniqueName('crash');
    const topic = uniqueName('finished');
    const store = createGcsObjectStore({ bucket, apiEndpoint: s.gcsEndpoint, projectId: s.pubsubProject });
    await store.ensureBucket();
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const start = () => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'main.ts')], {
        env: {
          ...process.env,
          SLUICE_KAFKA_BROKERS: s.kafkaBrokers.join(','),
          SLUICE_REDIS_URL: s.redisUrl,
          SLUICE_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
          SLUICE_RESULTS_BUCKET: bucket,
          SLUICE_GCS_ENDPOINT: s.gcsEndpoint,
          SLUICE_PUBSUB_PROJECT: s.pubsubProject,
          PUBSUB_EMULATOR_HOST: s.pubsubEmulatorHost,
          SLUICE_PUBSUB_TOPIC: topic,
          SLUICE_SINK_TENANTS: tenant,
          SLUICE_SINK_PART_RECORDS: '200',
          SLUICE_SINK_FLUSH_MS: '300',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push(child);
      return child;
    };
    const n = 3_000;
    const job = makeJob({ tenant, total: n, accepted: n });
    await kafka.ensureTopics([{ topic: job.resultsTopic, partitions: 2 }]);
    await publishJob(kafka, codecs, job, 'sealed');
    try {
      const first = start();
      // Outcomes arrive over a few seconds on two partitions, one in ten of them twice at once
      // and 300 of the first rows again at the end (a dispatcher's redeliveries after a rebalance).
      const stream: PromptOutcome[] = [];
      for (let i = 0; i < n; i++) {
        stream.push(outcome(job, i, i % 97 === 0 ? 'failed' : 'ok'));
        if (i % 10 === 3) stream.push(outcome(job, i - 3));
      }
      for (let j = 0; j < 300; j++) stream.push(outcome(job, j * 3));
      let sent = 0;
      const producing = (async () => {
        while (sent < stream.length) {
          await produceOutcomes(kafka, codecs, job, stream.slice(sent, sent + 150), 2);
          sent += 150;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      await waitFor(
        'a few committed parts',
        async () => ((await store.list(`${job.jobId}/_index/`)).length >= 4 ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const committedAtKill = (await store.list(`${job.jobId}/_index/`)).length;
      expect(await store.get(`${job.jobId}/manifest.json`)).toBeUndefined(); // killed mid-job
      await producing;
      start();
      const out = await waitFor('the manifest', () => readOutputs(store, job.jobId), {
        timeoutMs: 90_000,
        intervalMs: 500,
      });
      const rows = [...out.results, ...out.errors].map((l) => l['row_index'] as number);
      expect(rows).toHaveLength(n);
      expect(new Set(rows).size).toBe(n);
      expect(out.errors).toHaveLength(31); // rows 0, 97, ... 2910
      expect(out.manifest.counts).toMatchObject({ total: n, succeeded: n - 31, failed: 31 });
      expect((await store.list(`${job.jobId}/_index/`)).length).toBeGreaterThan(committedAtKill);
      await waitFor('the announcement', () => (sub.messages.length > 0 ? true : undefined), { timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 2_000)); // a second announcement, if any, arrives now
      expect(sub.messages.map((m) => m.attributes['jobId'])).toEqual([job.jobId]);
    } finally {
      await sub.close();
    }
  }, 180_000);
});
