import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conformance, conformancePython } from '../conformance/venv.js';
import { lagReport } from '../sluice/lag.js';
import { startDev, type DevRunning } from '../sluice/dev.js';
import { devEnv } from './dev-env.js';

interface Checked {
  jobs: Record<
    string,
    {
      announcements: number;
      attributes: Record<string, string>;
      body: { jobId: string; status: string; counts: Record<string, number>; manifestUri: string };
      manifest: { status: string; counts: Record<string, number> };
      files: Array<{ kind: string; records: number; lines: number; sha256Matches: boolean; bytesMatch: boolean }>;
      rows: number[];
      customIds: string[];
    }
  >;
}

/**
 * Issue 30's conformance suite: Sluice's contracts as the clients its users have see them, not
 * as our own code does. Python's confluent-kafka produces prompt records with the Schema
 * Registry's AvroSerializer (Confluent's default topic-name subjects, record-name subjects, and a
 * leaner schema that leaves optional fields out, BACKWARD compatible); google-cloud-pubsub waits
 * for the announcements and google-cloud-storage reads the manifests and files. The clients come
 * from PyPI into a cached virtual environment (dev/conformance/venv.ts).
 */
describe('conformance: Python confluent-kafka, google-cloud-pubsub and google-cloud-storage against Sluice', () => {
  const s = stackSettings();
  const tenant = uniqueName('conf');
  const key = `sk-${uniqueName('conf')}`;
  const lane = `conf${Date.now().toString(36)}`;
  const bucket = uniqueName('conf-results');
  const topic = uniqueName('conf-finished');
  const env = {
    PUBSUB_EMULATOR_HOST: s.pubsubEmulatorHost,
    STORAGE_EMULATOR_HOST: s.gcsEndpoint,
  };
  let python: string;
  let sim: ProviderSimServer;
  let dev: DevRunning;

  beforeAll(async () => {
    python = conformancePython();
    sim = await startProviderSim({
      config: {
        seed: 7,
        latency: { baseMs: 20, perTokenMs: 0.2, sigma: 0.3 },
        keys: { 'sk-conf': { dialect: 'openai', limits: { rpm: 12_000, tpm: 2_000_000 } } },
      },
    });
    dev = await startDev({
      env: devEnv(s, { tenant, key, lane, bucket, topic }),
      lanes: [{ provider: lane, adapter: 'openai', apiKey: 'sk-conf', baseUrl: `${sim.url}/v1` }],
      log: pino({ level: 'warn' }),
      port: 0,
    });
  }, 300_000);

  afterAll(async () => {
    await dev?.close();
    await sim?.close();
  });

  it(
    'takes records of topic-name and record-name subjects and of a leaner schema to files Google clients read, ' +
      'one announcement each, and lag 0',
    async () => {
      const subscription = uniqueName('conf-sub');
      await conformance(
        python,
        ['subscribe', '--project', s.pubsubProject, '--topic', topic, '--subscription', subscription],
        env,
      );
      const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      const variants = [
        { strategy: 'topic', schema: 'full' },
        { strategy: 'record', schema: 'full' },
        { strategy: 'topic', schema: 'lean' },
      ] as const;
      const rows = 40;
      const jobs: Array<{ id: string; strategy: string; schema: string }> = [];
      for (const v of variants) {
        const created = await fetch(`${dev.url}/v1/jobs`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ provider: lane, model: 'gpt-4o-mini', source: 'kafka' }),
        });
        expect(created.status).toBe(201);
        const job = (await created.json()) as {
          id: string;
          kafka: { laneTopic: string; partitions: number[]; tenant: string };
        };
        const produced = (await conformance(
          python,
          [
            'produce',
            ...['--bootstrap', s.kafkaBrokers.join(','), '--registry', s.schemaRegistryUrl],
            ...['--topic', job.kafka.laneTopic, '--partitions', job.kafka.partitions.join(',')],
            ...['--job', job.id, '--tenant', job.kafka.tenant, '--provider', lane, '--model', 'gpt-4o-mini'],
            ...['--rows', String(rows), '--strategy', v.strategy, '--schema', v.schema],
          ],
          env,
        )) as { produced: number; undelivered: number; failures: string[]; subject: string };
        expect(produced).toMatchObject({ produced: rows, undelivered: 0, failures: [] });
        const sealed = await fetch(`${dev.url}/v1/jobs/${job.id}/seal`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ total: rows }),
        });
        expect(sealed.status).toBe(200);
        jobs.push({ id: job.id, ...v });
      }

      const checked = (await conformance(
        python,
        [
          'check',
          '--project',
          s.pubsubProject,
          '--subscription',
          subscription,
          '--jobs',
          jobs.map((j) => j.id).join(','),
        ],
        env,
      )) as Checked;
      const every = Array.from({ length: rows }, (_, i) => i);
      for (const j of jobs) {
        const c = checked.jobs[j.id]!;
        const what = `${j.strategy}-name subject, ${j.schema} schema`;
        expect(c.announcements, what).toBe(1);
        expect(c.attributes, what).toMatchObject({ jobId: j.id, tenant, status: 'completed' });
        expect(c.body.counts, what).toEqual({ total: rows, succeeded: rows, failed: 0, cancelled: 0 });
        expect(c.manifest, what).toMatchObject({ status: 'completed', counts: { total: rows, succeeded: rows } });
        expect(c.files.length, what).toBeGreaterThan(0);
        for (const f of c.files)
          expect(f, what).toMatchObject({ sha256Matches: true, bytesMatch: true, lines: f.records });
        expect(c.rows, what).toEqual(every);
        // custom_id comes back as the producer sent it; a leaner schema without it reads null.
        expect(c.customIds, what).toEqual(j.schema === 'full' ? every.map((i) => `py-${i}`).sort() : []);
      }

      // Idle after the jobs: the lane's consumer group has committed to the log's end.
      const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('conf-lag') });
      const admin = kafka.admin();
      const redis = new Redis(s.redisUrl);
      await admin.connect();
      try {
        let lag: number | undefined;
        await waitFor(
          'lag 0 on the lane',
          async () => {
            const r = await lagReport(admin, redis, `sluice-dispatcher-${lane}`);
            lag = r.groups[0]?.lag;
            return lag === 0 ? true : undefined;
          },
          { timeoutMs: 30_000, intervalMs: 1_000 },
        ).catch(() => undefined);
        expect(lag).toBe(0);
      } finally {
        await admin.disconnect();
        redis.disconnect();
      }
    },
    300_000,
  );
});
