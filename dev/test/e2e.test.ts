import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';
import { createGcsObjectStore } from '@sluice/object-store';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDeadLetters } from '../sluice/dead-letters.js';
import { startDev, type DevRunning } from '../sluice/dev.js';
import { devEnv } from './dev-env.js';
import { repoRoot } from '../stack/paths.js';
import { subscribe } from '../../stream-processors/sink/test/helpers.js';

/**
 * The whole pipeline in one process on the real local stack: an HTTP upload, the dispatcher calling
 * the simulated provider, the sink writing to the GCS emulator, and a Pub/Sub subscriber.
 */
describe('end to end: HTTP upload to GCS files and a Pub/Sub announcement', () => {
  const s = stackSettings();
  const tenant = uniqueName('e2e');
  const key = `sk-${uniqueName('e2e')}`;
  const lane = `e2e${Date.now().toString(36)}`;
  const bucket = uniqueName('e2e-results');
  const topic = uniqueName('e2e-finished');
  let sim: ProviderSimServer;
  let dev: DevRunning;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-'));
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const credentialsFile = join(dir, 'sa.json');
    await writeFile(
      credentialsFile,
      JSON.stringify({
        type: 'service_account',
        client_email: 'sluice-e2e@sluice-local.iam.gserviceaccount.com',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      }),
    );
    sim = await startProviderSim({
      config: {
        seed: 5,
        latency: { baseMs: 20, perTokenMs: 0.2, sigma: 0.3 },
        keys: { 'sk-e2e': { dialect: 'openai', limits: { rpm: 12_000, tpm: 2_000_000 }, faults: { errorRate: 0.02 } } },
      },
    });
    dev = await startDev({
      env: devEnv(s, { tenant, key, lane, bucket, topic }, { SLUICE_GCS_CREDENTIALS_FILE: credentialsFile }),
      lanes: [{ provider: lane, adapter: 'openai', apiKey: 'sk-e2e', baseUrl: `${sim.url}/v1` }],
      log: pino({ level: 'warn' }),
      port: 0,
    });
  }, 120_000);

  afterAll(async () => {
    await dev?.close();
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers one record per row (results and errors apart), files in GCS, and one announcement', async () => {
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    try {
      const created = await fetch(`${dev.url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ provider: lane, model: 'gpt-4o-mini', parameters: { maxTokens: 20 } }),
      });
      expect(created.status).toBe(201);
      const job = (await created.json()) as { id: string };
      const lines: string[] = [];
      for (let i = 0; i < 500; i++) {
        lines.push(
          i % 100 === 7
            ? '{"custom_id": "broken", "prompt": '
            : JSON.stringify({ custom_id: `h${i}`, prompt: `Headline ${i}: is it good news?` }),
        );
      }
      const upload = await fetch(`${dev.url}/v1/jobs/${job.id}/input`, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/jsonl' },
        body: lines.join('\n') + '\n',
      });
      expect(upload.status).toBe(200);
      expect(await upload.json()).toMatchObject({ accepted: 495, invalid: 5, total: 500 });

      await waitFor('the announcement', () => sub.messages.find((m) => m.attributes['jobId'] === job.id), {
        timeoutMs: 120_000,
        intervalMs: 250,
      });
      const message = sub.messages.find((m) => m.attributes['jobId'] === job.id)!;
      expect(message.attributes).toEqual({ jobId: job.id, tenant, status: 'completed_with_errors' });
      const announced = JSON.parse(message.data.toString()) as { manifestUri: string; counts: Record<string, number> };
      expect(announced.manifestUri).toBe(`gs://${bucket}/${job.id}/manifest.json`);
      expect(announced.counts).toEqual({ total: 500, succeeded: 495, failed: 5, cancelled: 0 });

      // The files in the GCS emulator.
      const store = createGcsObjectStore({ bucket, apiEndpoint: s.gcsEndpoint, projectId: s.pubsubProject });
      const manifest = JSON.parse((await store.get(`${job.id}/manifest.json`))!.toString()) as {
        outputs: { results: Array<{ name: string }>; errors: Array<{ name: string }> };
      };
      const read = async (files: Array<{ name: string }>) =>
        (await Promise.all(files.map(async (f) => (await store.get(f.name))!.toString())))
          .join('')
          .split('\n')
          .filter(Boolean)
          .map(
            (l) =>
              JSON.parse(l) as {
                custom_id: string | null;
                row_index: number;
                response: { body: { choices: unknown[] } } | null;
                error: { code: string; line: number } | null;
              },
          );
      const results = await read(manifest.outputs.results);
      const errors = await read(manifest.outputs.errors);
      expect(results).toHaveLength(495);
      expect(new Set(results.map((r) => r.custom_id)).size).toBe(495);
      expect(results.every((r) => r.error === null && r.response!.body.choices.length === 1)).toBe(true);
      expect(errors.map((e) => [e.row_index, e.error!.code, e.error!.line])).toEqual(
        [7, 107, 207, 307, 407].map((row) => [row, 'INPUT_INVALID_JSON', row + 1]),
      );

      // The API: the job's final state, its files with signed URLs, and the streamed download.
      const got = (await (await fetch(`${dev.url}/v1/jobs/${job.id}`, { headers })).json()) as Record<string, unknown>;
      expect(got).toMatchObject({ status: 'completed_with_errors', manifestUri: announced.manifestUri });
      expect(got['counts']).toMatchObject({ total: 500, succeeded: 495, failed: 5, invalid: 5 });
      const listing = (await (await fetch(`${dev.url}/v1/jobs/${job.id}/results`, { headers })).json()) as {
        complete: boolean;
        records: number;
        files: Array<{ kind: string; url: string; records: number }>;
      };
      expect(listing).toMatchObject({ complete: true, records: 500 });
      const signed = listing.files.find((f) => f.kind === 'errors')!;
      expect(signed.url).toMatch(/X-Goog-Signature=/);
      expect((await (await fetch(signed.url)).text()).trim().split('\n')).toHaveLength(signed.records);
      const download = await fetch(`${dev.url}/v1/jobs/${job.id}/results/results`, { headers });
      expect(download.headers.get('content-type')).toMatch(/application\/jsonl/);
      expect((await download.text()).trim().split('\n')).toHaveLength(495);
      // Another tenant's key sees no such job.
      expect(
        (await fetch(`${dev.url}/v1/jobs/${job.id}/results`, { headers: { authorization: 'Bearer sk-nobody' } }))
          .status,
      ).toBe(401);

      await new Promise((r) => setTimeout(r, 1_000));
      expect(sub.messages.filter((m) => m.attributes['jobId'] === job.id)).toHaveLength(1);
    } finally {
      await sub.close();
    }
  }, 180_000);

  // The producer path of other pipelines (docs/kafka-producers.md), as an outside client takes it:
  // its own registry client and subject, records on the job's lane, a seal; beside them, forged
  // records naming the job with another tenant or a row past the total, which must not count.
  it('takes Avro records produced to the lane through the registry to GCS files and one announcement', async () => {
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('e2e-producer') });
    const producer = kafka.producer();
    try {
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
      const registry = new SchemaRegistry({ host: s.schemaRegistryUrl });
      const schema = readFileSync(join(repoRoot, 'schemas/avro/prompt-request.avsc'), 'utf8');
      const { id: schemaId } = await registry.register(
        { type: SchemaType.AVRO, schema },
        { subject: `${job.kafka.laneTopic}-value` },
      );
      const record = (rowIndex: number, tenant = job.kafka.tenant) => ({
        jobId: job.id,
        promptId: `${job.id}:${rowIndex}`,
        rowIndex,
        tenant,
        provider: lane,
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `Headline ${rowIndex}: is it good news?` }],
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
        customId: `k${rowIndex}`,
        priority: 0,
        submittedAt: Date.now(),
        source: 'kafka',
      });
      const n = 200;
      const produce = async (rows: Array<ReturnType<typeof record>>) =>
        producer.send({
          topic: job.kafka.laneTopic,
          messages: await Promise.all(
            rows.map(async (r, i) => ({
              key: job.id,
              partition: job.kafka.partitions[i % job.kafka.partitions.length],
              value: await registry.encode(schemaId, r),
            })),
          ),
        });
      await producer.connect();
      await produce([...Array.from({ length: n }, (_, i) => record(i)), record(3, 'mallory')]);
      const sealed = await fetch(`${dev.url}/v1/jobs/${job.id}/seal`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ total: n }),
      });
      expect(sealed.status).toBe(200);
      // Past the total once it is known (the dispatcher reads a job's view again after a second).
      // Before the seal such a row could not be told apart: it is called, and the sink, which
      // knows the total when it counts, writes it nowhere.
      await new Promise((r) => setTimeout(r, 1_200));
      await produce([record(n + 5)]);

      await waitFor('the announcement', () => sub.messages.find((m) => m.attributes['jobId'] === job.id), {
        timeoutMs: 120_000,
        intervalMs: 250,
      });
      await new Promise((r) => setTimeout(r, 1_000)); // a second announcement would arrive now
      const announcements = sub.messages.filter((m) => m.attributes['jobId'] === job.id);
      expect(announcements).toHaveLength(1);
      expect(announcements[0]!.attributes['status']).toBe('completed');
      const download = await fetch(`${dev.url}/v1/jobs/${job.id}/results/results`, { headers });
      const ids = (await download.text())
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
      expect(ids.sort()).toEqual(Array.from({ length: n }, (_, i) => `k${i}`).sort());
      // The forged two are dead letters, with their reasons.
      let reasons: string[] = [];
      await waitFor(
        'the two dead letters',
        async () => {
          reasons = (await readDeadLetters(kafka, { jobId: job.id })).map((l) => l.reason).sort();
          return reasons.length >= 2 ? true : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 1_000 },
      ).catch(() => undefined);
      expect(reasons).toEqual(['ROW_OUT_OF_RANGE', 'TENANT_MISMATCH']);
    } finally {
      await producer.disconnect();
      await sub.close();
    }
  }, 180_000);

  // Real workloads: prompts of 2 KB and completions of up to 16k tokens (64 KB of text, and the
  // raw body beside it) through every topic to GCS.
  it('delivers 2 KB prompts with completions of up to 16k tokens whole to GCS', async () => {
    const sub = await subscribe(s.pubsubProject, s.pubsubEmulatorHost, topic);
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    try {
      const created = await fetch(`${dev.url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ provider: lane, model: 'gpt-4o-mini', parameters: { maxTokens: 16_384 } }),
      });
      const job = (await created.json()) as { id: string };
      const n = 30;
      const lines = Array.from({ length: n }, (_, i) =>
        JSON.stringify({ custom_id: `doc${i}`, prompt: `Document ${i}: ${'the filing states '.repeat(120)}` }),
      );
      expect(lines.every((l) => l.length > 2_000)).toBe(true);
      const upload = await fetch(`${dev.url}/v1/jobs/${job.id}/input`, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/jsonl' },
        body: lines.join('\n') + '\n',
      });
      expect(upload.status).toBe(200);
      await waitFor('the announcement', () => sub.messages.find((m) => m.attributes['jobId'] === job.id), {
        timeoutMs: 120_000,
        intervalMs: 250,
      });
      const message = sub.messages.find((m) => m.attributes['jobId'] === job.id)!;
      expect(message.attributes['status']).toBe('completed');
      const download = await fetch(`${dev.url}/v1/jobs/${job.id}/results/results`, { headers });
      const results = (await download.text())
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as {
              custom_id: string;
              response: {
                body: { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } };
              };
            },
        );
      expect(results).toHaveLength(n);
      const longest = Math.max(...results.map((r) => r.response.body.choices[0]!.message.content.length));
      // 30-100 % of 16,384 tokens at about four characters a token.
      expect(longest).toBeGreaterThan(40_000);
      expect(Math.max(...results.map((r) => r.response.body.usage.completion_tokens))).toBeGreaterThan(10_000);
    } finally {
      await sub.close();
    }
  }, 180_000);
});
