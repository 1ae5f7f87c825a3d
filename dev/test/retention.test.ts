import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDev, type DevRunning } from '../sluice/dev.js';
import { devEnv } from './dev-env.js';
import { subscribe } from '../../stream-processors/sink/test/helpers.js';

/**
 * Issue 30 #2, regression: after the sink's retention sweep deleted one finished job's results
 * topic, the dispatcher never wrote another outcome ("This server does not host this
 * topic-partition" on every metadata refresh): the next job stayed queued for good. Here the
 * retention is a second and the sweep runs twice a second, over job after job, with a job running
 * while another's topic is deleted.
 */
describe('results topics that come and go (retention of a second, many sweeps)', () => {
  const s = stackSettings();
  const tenant = uniqueName('ret');
  const key = `sk-${uniqueName('ret')}`;
  const lane = `ret${Date.now().toString(36)}`;
  const topic = uniqueName('ret-finished');
  let sim: ProviderSimServer;
  let dev: DevRunning;

  beforeAll(async () => {
    sim = await startProviderSim({
      config: {
        seed: 9,
        latency: { baseMs: 20, perTokenMs: 0, sigma: 0.2 },
        keys: { 'sk-ret': { dialect: 'openai', limits: { rpm: 60_000 } } },
      },
    });
    dev = await startDev({
      env: devEnv(
        s,
        { tenant, key, lane, bucket: uniqueName('ret-results'), topic },
        { SLUICE_SINK_FLUSH_MS: '300', SLUICE_RESULTS_RETENTION_MS: '1000', SLUICE_SINK_SWEEP_MS: '500' },
      ),
      lanes: [{ provider: lane, adapter: 'openai', apiKey: 'sk-ret', baseUrl: `${sim.url}/v1` }],
      log: pino({ level: 'warn' }),
      port: 0,
    });
  }, 120_000);

  afterAll(async () => {
    await dev?.close();
    await sim?.close();
  });

  it('finishes every job while earlier jobs’ results topics are deleted under it', async () => {
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const admin = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('ret-admin') }).admin();
    await admin.connect();
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const submit = async (rows: number) => {
      const created = await fetch(`${dev.url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ provider: lane, model: 'gpt-4o-mini' }),
      });
      const job = (await created.json()) as { id: string; kafka?: unknown };
      const body = Array.from({ length: rows }, (_, i) => JSON.stringify({ prompt: `row ${i}` })).join('\n');
      const up = await fetch(`${dev.url}/v1/jobs/${job.id}/input`, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/jsonl' },
        body,
      });
      expect(up.status).toBe(200);
      return job.id;
    };
    const announced = (jobId: string) =>
      waitFor('the announcement of ' + jobId, () => sub.messages.find((m) => m.attributes['jobId'] === jobId), {
        timeoutMs: 60_000,
        intervalMs: 100,
      });
    const topicGone = (jobId: string) =>
      waitFor(
        `the results topic of ${jobId} deleted`,
        async () => (!(await admin.listTopics()).includes(`sluice.results.${jobId}`) ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    try {
      const done: string[] = [];
      // Job after job, each submitted once the one before is announced and its topic deleted.
      for (let i = 0; i < 4; i++) {
        const id = await submit(30);
        await announced(id);
        await topicGone(id);
        done.push(id);
      }
      // A long job running while a short one finishes and its topic is deleted.
      const long = await submit(3_000);
      const short = await submit(20);
      await announced(short);
      await topicGone(short);
      await announced(long);
      done.push(short, long);
      await new Promise((r) => setTimeout(r, 1_000)); // a second announcement would come now
      for (const id of done) {
        const mine = sub.messages.filter((m) => m.attributes['jobId'] === id);
        expect(mine, id).toHaveLength(1);
        expect(mine[0]!.attributes['status'], id).toBe('completed');
      }
      const longBody = JSON.parse(sub.messages.find((m) => m.attributes['jobId'] === long)!.data.toString()) as {
        counts: Record<string, number>;
      };
      expect(longBody.counts).toMatchObject({ total: 3_000, succeeded: 3_000 });
    } finally {
      await admin.disconnect();
      await sub.close();
    }
  }, 240_000);
});
