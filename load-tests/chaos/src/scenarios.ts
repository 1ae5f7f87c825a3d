import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { laneTopic, promptId, resultsTopic, type SluiceKafka } from '@sluice/kafka';
import type { KeyConfig, ProviderSimServer } from '@sluice/provider-sim';
import { corpusUpload, stackSettings, waitFor } from '@sluice/testing';
import { readDeadLetters } from '@sluice/dev/dead-letters';
import { createSchemaCodecs } from '@sluice/schemas';
import { runningPid, stackUp } from '@sluice/dev/stack';
import type { RowExpectation } from './checker.js';
import type { Cluster, Role } from './cluster.js';
import type { FaultProxy } from '@sluice/testing';

/** What a scenario works with: the cluster, the simulator, the API, and the ledger of submissions. */
export interface ScenarioContext {
  cluster: Cluster;
  sim: ProviderSimServer;
  simKey: string;
  kafka: SluiceKafka;
  lane: string;
  api: string;
  apiKey: string;
  quick: boolean;
  /** jobId → rows submitted (every row gets an outcome: result or error). */
  ledger: Map<string, number>;
  /** What each row of a job must end as, where its input is not jobInput's (the default: inputRow). */
  expectations: Map<string, (row: number) => RowExpectation>;
  log(line: string): void;
  /** Outcomes written so far across the scenario's jobs (the sink's counters). */
  written(): Promise<number>;
  /** Prompts submitted so far. */
  submittedRows(): number;
  /** Marks the moment a fault ended; the runner measures recovery from the last mark. */
  faultEnded(): void;
  /** The TCP proxy in front of Kafka, for scenarios with `viaProxy`. */
  proxy: FaultProxy | undefined;
}

export interface Scenario {
  name: string;
  /** The roles reach Kafka through the fault proxy (ctx.proxy). */
  viaProxy?: boolean;
  /** In the --quick subset. */
  quick: boolean;
  what: string;
  /** The simulator key's configuration for this scenario (merged over the default). */
  key?: Partial<KeyConfig>;
  /** Settings for the roles' first start only (e.g. a crash point). */
  firstStart?: Partial<Record<Role, Record<string, string>>>;
  run(ctx: ScenarioContext): Promise<void>;
}

const headers = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

/** The input of a job: `n` rows, one in a hundred of them bad JSON. */
export function jobInput(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    out +=
      i % 100 === 42
        ? '{"custom_id": "broken", "prompt": \n'
        : `${JSON.stringify({ custom_id: `r${i}`, prompt: `Is headline ${i} good news?`, max_tokens: 8 })}\n`;
  }
  return out;
}

/** What jobInput's row `row` must end as: its custom_id, and for a bad row its error. */
export function inputRow(row: number): RowExpectation {
  return row % 100 === 42 ? { customId: null, inputError: 'INPUT_INVALID_JSON' } : { customId: `r${row}` };
}

export async function createJob(ctx: ScenarioContext, idempotencyKey?: string): Promise<string> {
  const res = await fetch(`${ctx.api}/v1/jobs`, {
    method: 'POST',
    headers: { ...headers(ctx.apiKey), ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
    body: JSON.stringify({ provider: ctx.lane, model: 'gpt-4o-mini' }),
  });
  if (res.status !== 201 && res.status !== 200) throw new Error(`create job: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export async function upload(ctx: ScenarioContext, jobId: string, body: string): Promise<Response> {
  return fetch(`${ctx.api}/v1/jobs/${jobId}/input`, {
    method: 'PUT',
    headers: { ...headers(ctx.apiKey), 'content-type': 'application/jsonl' },
    body,
  });
}

/** Creates a job, uploads `n` rows and records them in the ledger. */
export async function submit(ctx: ScenarioContext, n: number): Promise<string> {
  const jobId = await createJob(ctx);
  const res = await upload(ctx, jobId, jobInput(n));
  if (res.status !== 200) throw new Error(`upload: ${res.status} ${await res.text()}`);
  ctx.ledger.set(jobId, n);
  return jobId;
}

/** Waits until `fraction` of the submitted prompts have been written. */
export async function progress(ctx: ScenarioContext, fraction: number, timeoutMs = 120_000): Promise<void> {
  const target = Math.floor(ctx.submittedRows() * fraction);
  await waitFor(
    `${Math.round(fraction * 100)} % of the prompts written`,
    async () => ((await ctx.written()) >= target ? true : undefined),
    { timeoutMs, intervalMs: 100 },
  );
}

const between = (a: number, b: number) => a + Math.random() * (b - a);

/** The broker the local stack started (only a process of ours is ever stopped). */
function brokerPid(): number {
  const pid = runningPid('kafka');
  if (pid === undefined) throw new Error('no Kafka broker started by npm run stack:up is running');
  return pid;
}

function killAt(role: Role, name: string, quick = true): Scenario {
  return {
    name,
    quick,
    what: `SIGKILL of the ${role} at a random moment (20-60 % of the prompts written), then a restart`,
    async run(ctx) {
      const rows = ctx.quick ? 3_000 : 10_000;
      const jobs = [submit(ctx, rows), submit(ctx, Math.floor(rows / 3))];
      await Promise.all(jobs);
      await progress(ctx, between(0.2, 0.6));
      ctx.log(`  kill -9 ${role}`);
      await ctx.cluster.kill(role);
      await new Promise((r) => setTimeout(r, 1_000));
      await ctx.cluster.start(role);
      ctx.faultEnded();
    },
  };
}

/** A key whose calls fail with a 500 15 % of the time: retries that go through the delay topics. */
const delayTraffic: Scenario['key'] = { faults: { errorRate: 0.15 } };

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix =
    tens >= 11 && tens <= 13 ? 'th' : (({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th');
  return `${n}${suffix}`;
}

function crashPoint(role: Role, point: string, after: number): Scenario {
  return {
    name: `crash-${point.replace('.', '-')}`,
    quick: true,
    what: `the ${role} kills itself at ${point} (when it reaches it for the ${ordinal(after)} time), and is restarted`,
    firstStart: { [role]: { SLUICE_CRASH_POINT: `${point}:${after}` } },
    // Delays are needed for the delay processor's point: a provider that fails often (its 5xx
    // are retried through the delay topics; 429s are waited out in place, not delayed).
    key: role === 'delay' ? delayTraffic : undefined,
    async run(ctx) {
      await submit(ctx, ctx.quick ? 2_000 : 6_000);
      await waitFor(`the ${role} to reach ${point}`, () => (ctx.cluster.alive(role) ? undefined : true), {
        timeoutMs: 90_000,
        intervalMs: 100,
      });
      ctx.log(`  ${role} died at ${point}; restarting`);
      await ctx.cluster.start(role);
      ctx.faultEnded();
    },
  };
}

export const scenarios: Scenario[] = [
  {
    name: 'baseline',
    quick: true,
    what: 'no fault: two jobs, 1 % bad rows',
    async run(ctx) {
      await Promise.all([submit(ctx, ctx.quick ? 2_000 : 10_000), submit(ctx, 500)]);
    },
  },
  killAt('dispatcher', 'kill-dispatcher'),
  killAt('sink', 'kill-sink'),
  killAt('ingest', 'kill-ingest-idle', false),
  {
    name: 'kill-delay',
    quick: true,
    what: 'SIGKILL of the delay processor while retries of 5xx fill the delay topics, then a restart',
    key: delayTraffic,
    async run(ctx) {
      await submit(ctx, ctx.quick ? 1_500 : 5_000);
      await progress(ctx, 0.3);
      ctx.log('  kill -9 delay');
      await ctx.cluster.kill('delay');
      await new Promise((r) => setTimeout(r, 3_000));
      await ctx.cluster.start('delay');
      ctx.faultEnded();
    },
  },
  {
    name: 'kill-ingest-mid-upload',
    quick: true,
    what: 'SIGKILL of the ingest API in the middle of an upload; the same input is sent again',
    async run(ctx) {
      const rows = ctx.quick ? 8_000 : 30_000;
      const jobId = await createJob(ctx);
      ctx.ledger.set(jobId, rows);
      const input = jobInput(rows);
      const req = request(`${ctx.api}/v1/jobs/${jobId}/input`, {
        method: 'PUT',
        headers: { ...headers(ctx.apiKey), 'content-type': 'application/jsonl' },
      });
      req.on('error', () => undefined);
      // Slowly: 64 KiB every 20 ms.
      let sent = 0;
      const pump = setInterval(() => {
        if (sent < input.length) req.write(input.slice(sent, (sent += 65_536)));
      }, 20);
      await waitFor(
        'a few committed chunks',
        async () => {
          const r = await fetch(`${ctx.api}/v1/jobs/${jobId}`, { headers: headers(ctx.apiKey) });
          const j = (await r.json()) as { counts: { queued: number; succeeded: number } };
          return j.counts.queued + j.counts.succeeded >= 2_000 ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      ctx.log('  kill -9 ingest mid-upload');
      await ctx.cluster.kill('ingest');
      clearInterval(pump);
      req.destroy();
      await ctx.cluster.start('ingest');
      ctx.faultEnded();
      await waitFor(
        'the re-sent upload to be taken',
        async () => {
          const r = await upload(ctx, jobId, input);
          if (r.status === 409) return undefined; // the dead upload's lock has not expired yet
          if (r.status !== 200) throw new Error(`re-upload: ${r.status} ${await r.text()}`);
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 500 },
      );
    },
  },
  crashPoint('dispatcher', 'dispatcher.after-call', 300),
  crashPoint('dispatcher', 'dispatcher.after-produce', 300),
  crashPoint('delay', 'delay.after-produce', 3),
  crashPoint('sink', 'sink.after-write', 3),
  crashPoint('sink', 'sink.after-announce', 1),
  {
    name: 'poison-records',
    quick: true,
    what: 'garbage on the lane and the results topic, and valid records of an unknown job, another tenant and a row out of range, beside a real job: the lane records end as dead letters',
    async run(ctx) {
      const jobId = await submit(ctx, ctx.quick ? 1_000 : 5_000);
      const producer = ctx.kafka.producer();
      await producer.connect();
      const junk = [
        { value: randomBytes(64) },
        { value: Buffer.from('{"not": "avro"}') },
        { value: Buffer.from([0, 0, 0, 0x7f, 0xff, 1, 2, 3]) }, // Confluent framing, unknown schema id
        { value: null },
      ];
      // Valid prompt records that no job may take: an unknown job, another tenant, a row out of range.
      const codecs = await createSchemaCodecs({ registryUrl: stackSettings().schemaRegistryUrl });
      const unknownJob = `job_${randomBytes(6).toString('hex')}`;
      const view = await fetch(`${ctx.api}/v1/jobs/${jobId}`, { headers: headers(ctx.apiKey) });
      const tenant = ((await view.json()) as { kafka: { tenant: string } }).kafka.tenant;
      const forged = [
        { jobId: unknownJob, rowIndex: 0, tenant },
        { jobId, rowIndex: 1, tenant: 'mallory' },
        { jobId, rowIndex: 2 ** 32, tenant },
      ].map((r) => ({
        key: r.jobId,
        value: codecs.promptRequest.encodeSync({
          ...r,
          promptId: promptId(r.jobId, r.rowIndex),
          provider: ctx.lane,
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'forged' }],
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
          customId: null,
          priority: 0,
          submittedAt: Date.now(),
          source: 'kafka',
        }),
      }));
      const lane = laneTopic(ctx.lane);
      await producer.send({ topic: lane, messages: [...junk.map((m) => ({ key: jobId, ...m })), ...forged] });
      await producer.send({ topic: resultsTopic(jobId), messages: junk.map((m) => ({ key: jobId, ...m })) });
      await producer.disconnect();
      // Each lane record ends as a dead letter with its reason (the results topic's junk is skipped).
      const expected = ['JOB_UNKNOWN', 'ROW_OUT_OF_RANGE', 'TENANT_MISMATCH', ...junk.map(() => 'UNDECODABLE')].sort();
      let got: string[] = [];
      await waitFor(
        'the poison records as dead letters',
        async () => {
          const letters = await readDeadLetters(ctx.kafka);
          got = letters
            .filter((l) => (l.jobId === jobId || l.jobId === unknownJob) && l.source?.startsWith(`${lane}/`))
            .map((l) => l.reason)
            .sort();
          return got.length >= expected.length ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 2_000 },
      ).catch(() => undefined);
      if (JSON.stringify(got) !== JSON.stringify(expected))
        throw new Error(`dead letters of the poison records: ${got.join(', ')}; expected ${expected.join(', ')}`);
      ctx.log(`  dead letters: ${got.join(', ')}`);
    },
  },
  {
    name: 'bad-input',
    quick: true,
    what: "the bad-input corpus (a row of every kind the API refuses, a 5 MiB line, lone surrogates, a field nested 5,000 deep) as a job's whole input, beside a plain job",
    async run(ctx) {
      await submit(ctx, ctx.quick ? 500 : 2_000);
      const jobId = await createJob(ctx);
      const { body, rows } = corpusUpload();
      const res = await fetch(`${ctx.api}/v1/jobs/${jobId}/input`, {
        method: 'PUT',
        headers: { ...headers(ctx.apiKey), 'content-type': 'application/jsonl' },
        body,
      });
      if (res.status !== 200) throw new Error(`upload of the corpus: ${res.status} ${await res.text()}`);
      ctx.ledger.set(jobId, rows.length);
      ctx.expectations.set(jobId, (row) => ({
        customId: rows[row]?.customId ?? null,
        ...(rows[row]?.code ? { inputError: rows[row]!.code } : {}),
      }));
    },
  },
  {
    name: 'duplicate-submission',
    quick: true,
    what: 'the same create sent twice with one Idempotency-Key, and the same input uploaded twice',
    async run(ctx) {
      const key = `idem-${randomBytes(6).toString('hex')}`;
      const [a, b] = await Promise.all([createJob(ctx, key), createJob(ctx, key)]);
      if (a !== b) throw new Error(`one Idempotency-Key gave two jobs: ${a}, ${b}`);
      const input = jobInput(ctx.quick ? 1_000 : 5_000);
      ctx.ledger.set(a, ctx.quick ? 1_000 : 5_000);
      const first = await upload(ctx, a, input);
      const second = await upload(ctx, a, input);
      if (first.status !== 200) throw new Error(`upload: ${first.status}`);
      if (second.status !== 409) throw new Error(`a second upload to a sealed job answered ${second.status}, not 409`);
    },
  },
  {
    name: 'provider-outage',
    quick: true,
    what: 'every call answered 503 for 20 s (60 s in the full suite) from 2 s on',
    async run(ctx) {
      const ms = ctx.quick ? 20_000 : 60_000;
      const cfg = ctx.sim.sim.currentConfig.keys[ctx.simKey]!;
      ctx.sim.sim.setKey(ctx.simKey, {
        ...cfg,
        faults: { ...cfg.faults, outages: [{ startMs: ctx.sim.sim.elapsed() + 2_000, durationMs: ms }] },
      });
      await submit(ctx, ctx.quick ? 2_000 : 10_000);
      await new Promise((r) => setTimeout(r, ms + 2_000));
      ctx.faultEnded();
    },
  },
  {
    name: '429-storm',
    quick: true,
    what: 'the key limit falls to a tenth (20 requests/s) for 15 s, then comes back',
    async run(ctx) {
      await submit(ctx, ctx.quick ? 2_000 : 10_000);
      await progress(ctx, 0.1);
      ctx.sim.sim.setLimits(ctx.simKey, { rpm: 1_200 });
      await new Promise((r) => setTimeout(r, 15_000));
      ctx.sim.sim.setLimits(ctx.simKey, { rpm: 12_000 });
      ctx.faultEnded();
    },
  },
  {
    name: 'redis-restart-empty',
    quick: true,
    what: 'kill -9 of Redis (no persistence) at 30 % of the prompts written, started again empty 2 s later',
    async run(ctx) {
      await submit(ctx, ctx.quick ? 2_000 : 6_000);
      await progress(ctx, 0.3);
      const pid = runningPid('redis');
      if (pid === undefined) throw new Error('no Redis started by npm run stack:up is running');
      ctx.log(`  kill -9 redis (pid ${pid}); it starts again without its data`);
      process.kill(pid, 'SIGKILL');
      await waitFor('Redis to exit', () => (runningPid('redis') === undefined ? true : undefined), {
        timeoutMs: 10_000,
      });
      await new Promise((r) => setTimeout(r, 2_000));
      await stackUp(() => undefined);
      ctx.faultEnded();
    },
  },
  {
    name: 'broker-pause',
    quick: true,
    what: 'SIGSTOP of the Kafka broker for 15 s (longer than the session timeouts), then SIGCONT',
    async run(ctx) {
      await submit(ctx, 4_000);
      await progress(ctx, 0.3);
      const pid = brokerPid();
      ctx.log(`  SIGSTOP broker (pid ${pid})`);
      process.kill(pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 15_000));
      process.kill(pid, 'SIGCONT');
      ctx.faultEnded();
    },
  },
  {
    name: 'broker-kill',
    quick: false,
    what: 'kill -9 of the Kafka broker, started again 2 s later (same data directory)',
    async run(ctx) {
      await submit(ctx, 4_000);
      await progress(ctx, 0.3);
      const pid = brokerPid();
      ctx.log(`  kill -9 broker (pid ${pid})`);
      process.kill(pid, 'SIGKILL');
      await waitFor('the broker to exit', () => (runningPid('kafka') === undefined ? true : undefined), {
        timeoutMs: 10_000,
      });
      await new Promise((r) => setTimeout(r, 2_000));
      await stackUp(() => undefined);
      ctx.faultEnded();
    },
  },
  {
    name: 'rebalance-storm',
    quick: false,
    what: 'a dispatcher replica joins and leaves every 5 s for 40 s beside the steady one',
    async run(ctx) {
      await submit(ctx, 8_000);
      await progress(ctx, 0.05);
      for (let i = 0; i < 4; i++) {
        const replica = ctx.cluster.startReplica('dispatcher');
        await new Promise((r) => setTimeout(r, 5_000));
        const gone = new Promise((r) => replica.once('exit', r));
        replica.kill(i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
        await gone;
        await new Promise((r) => setTimeout(r, 5_000));
      }
      ctx.faultEnded();
    },
  },
  {
    name: 'kafka-network',
    // CI's network fault (see the chaos README for its history).
    quick: true,
    viaProxy: true,
    what: 'every role reaches Kafka through a TCP proxy that black-holes it for 15 s, resets all connections twice, then slows every chunk by 200 ms for 10 s',
    async run(ctx) {
      const proxy = ctx.proxy!;
      await submit(ctx, 4_000);
      await progress(ctx, 0.2);
      ctx.log('  black-hole 15 s');
      proxy.mode = 'blackhole';
      await new Promise((r) => setTimeout(r, 15_000));
      proxy.mode = 'pass';
      await progress(ctx, 0.5);
      ctx.log('  reset every connection, twice');
      proxy.resetAll();
      await new Promise((r) => setTimeout(r, 2_000));
      proxy.resetAll();
      // kafkajs can take minutes to give up on a connection the reset left half-dead.
      await progress(ctx, 0.7, 400_000);
      ctx.log('  slow: 200 ms per chunk for 10 s');
      proxy.mode = 'slow';
      await new Promise((r) => setTimeout(r, 10_000));
      proxy.mode = 'pass';
      ctx.faultEnded();
    },
  },
  {
    name: 'slow-provider',
    quick: false,
    what: 'a provider whose p99 latency is 30 s',
    key: { latency: { baseMs: 300, perTokenMs: 0, sigma: 0.3, tailProbability: 0.02, tailMultiplier: 100 } },
    async run(ctx) {
      await submit(ctx, 3_000);
    },
  },
];
