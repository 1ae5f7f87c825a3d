/**
 * npm run chaos -- [--quick] [--only NAME,NAME] [--json FILE]
 *
 * The fault suite: each scenario runs every role as its own process on the local stack, breaks
 * something (kills a role, the broker, Redis, the provider; feeds poison), and checks from the
 * files alone that every prompt ended exactly once and each job was announced once.
 * --quick runs the CI subset; --only runs the named scenarios.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PubSub, type Message } from '@google-cloud/pubsub';
import { createKafka } from '@sluice/kafka';
import { createGcsObjectStore, readJobIndex } from '@sluice/object-store';
import { startProviderSim, type KeyConfig } from '@sluice/provider-sim';
import {
  FaultProxy,
  freePort,
  helpIfAsked,
  parseEnvFile,
  proxyAddresses,
  stackSettings,
  waitFor,
} from '@sluice/testing';
import { check, checkFiles, type CheckResult, type JobFiles, type OutputLine, type RowExpectation } from './checker.js';
import { Cluster, type Role } from './cluster.js';
import { inputRow, scenarios, type Scenario, type ScenarioContext } from './scenarios.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
helpIfAsked(import.meta.url);
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string', default: join(root, 'load-tests', 'results', 'chaos.json') },
  },
});
const quick = values.quick!;
// Emulators only: no GCE metadata server to look for (here or in the roles, which inherit it).
process.env['METADATA_SERVER_DETECTION'] = 'none';
const envFile = join(root, '.sluice', 'stack.env');
if (!process.env['SLUICE_KAFKA_BROKERS'] && existsSync(envFile))
  Object.assign(process.env, parseEnvFile(readFileSync(envFile, 'utf8')));
const s = (() => {
  try {
    return stackSettings();
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`);
    process.exit(2);
  }
})();

interface Row extends Omit<CheckResult, 'examples'> {
  scenario: string;
  what: string;
  callsPerPrompt: number;
  recoverySeconds: number | null;
  seconds: number;
  peakRssMb: Record<Role, number>;
  examples: CheckResult['examples'];
  error: string | null;
}

const log = (line: string) => console.log(line);
const hex = () => randomBytes(4).toString('hex');
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: 'sluice-chaos' });
const pubsub = new PubSub({ projectId: s.pubsubProject, apiEndpoint: s.pubsubEmulatorHost, emulatorMode: true });
const sim = await startProviderSim({ config: { seed: 11, keys: {} } });

const baseKey: KeyConfig = {
  dialect: 'openai',
  limits: { rpm: 12_000, burstWindowMs: 1_000 },
  latency: { baseMs: 30, perTokenMs: 1, sigma: 0.3 },
  faults: { errorRate: 0.01 },
};

async function runScenario(sc: Scenario): Promise<Row> {
  const id = hex();
  const lane = `chaos${id}`;
  const tenant = `chaos-${id}`;
  const apiKey = `sk-chaos-${id}`;
  const simKey = `sk-${sc.name}-${id}`;
  const bucket = `chaos-${sc.name}-${id}`.toLowerCase().slice(0, 60);
  const topic = `chaos-finished-${id}`;
  sim.sim.setKey(simKey, { ...baseKey, ...sc.key, limits: { ...baseKey.limits, ...sc.key?.limits } });
  const store = createGcsObjectStore({ bucket, apiEndpoint: s.gcsEndpoint, projectId: s.pubsubProject });
  await store.ensureBucket();
  const [t] = await pubsub.createTopic(topic);
  const [sub] = await t.createSubscription(`${topic}-check`);
  const announced: string[] = [];
  sub.on('message', (m: Message) => {
    announced.push(m.attributes['jobId'] ?? '');
    m.ack();
  });
  const port = await freePort(24_500, 26_000);
  const api = `http://127.0.0.1:${port}`;
  const via = sc.viaProxy ? proxyAddresses() : undefined;
  const proxy = via ? new FaultProxy(via.listen, via.target) : undefined;
  await proxy?.start();
  const env: Record<string, string> = {
    SLUICE_KAFKA_BROKERS: via ? via.brokers : s.kafkaBrokers.join(','),
    SLUICE_REDIS_URL: s.redisUrl,
    SLUICE_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
    SLUICE_GCS_ENDPOINT: s.gcsEndpoint,
    PUBSUB_EMULATOR_HOST: s.pubsubEmulatorHost,
    SLUICE_PUBSUB_PROJECT: s.pubsubProject,
    SLUICE_API_KEYS: `${tenant}:${createHash('sha256').update(apiKey).digest('hex')}`,
    SLUICE_MODELS: JSON.stringify({ [lane]: ['gpt-4o-mini'] }),
    SLUICE_INGEST_PORT: String(port),
    SLUICE_UPLOAD_CHUNK_ROWS: '1000',
    SLUICE_UPLOAD_LOCK_MS: '2000',
    SLUICE_PROVIDER: 'openai',
    SLUICE_LANE: lane,
    SLUICE_PROVIDER_API_KEY: simKey,
    SLUICE_PROVIDER_KEY_ID: simKey,
    SLUICE_PROVIDER_BASE_URL: `${sim.url}/v1`,
    SLUICE_CALL_TIMEOUT_MS: '10000',
    SLUICE_RESULTS_BUCKET: bucket,
    SLUICE_PUBSUB_TOPIC: topic,
    SLUICE_SINK_TENANTS: tenant,
    SLUICE_SINK_PART_RECORDS: '500',
    SLUICE_SINK_FLUSH_MS: '500',
  };
  const cluster = new Cluster(env, api, log);
  const ledger = new Map<string, number>();
  const expectations = new Map<string, (row: number) => RowExpectation>();
  let lastWritten = 0;
  const written = async () => {
    let n = 0;
    for (const jobId of ledger.keys()) {
      const r = await fetch(`${api}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${apiKey}` } }).catch(
        () => undefined,
      );
      if (!r?.ok) return lastWritten; // the API is down: no news
      const j = (await r.json()) as { counts: { succeeded: number; failed: number } };
      n += j.counts.succeeded + j.counts.failed;
    }
    return (lastWritten = n);
  };
  let recovery: Promise<number> | undefined;
  const started = Date.now();
  const ctx: ScenarioContext = {
    cluster,
    sim,
    simKey,
    kafka,
    lane,
    api,
    apiKey,
    quick,
    ledger,
    expectations,
    log,
    proxy,
    written,
    submittedRows: () => [...ledger.values()].reduce((a, b) => a + b, 0),
    // Recovered: 5 % of the prompts (at least 50, or all that remain) newly written after the fault ended.
    faultEnded: () => {
      const at = Date.now();
      const total = ctx.submittedRows();
      recovery = (async () => {
        const target = Math.min(total, (await written()) + Math.max(50, Math.ceil(total * 0.05)));
        const t = await waitFor(
          'progress after the fault',
          async () => ((await written()) >= target ? Date.now() : undefined),
          { timeoutMs: 180_000, intervalMs: 100 },
        );
        return Math.round((t - at) / 100) / 10;
      })();
      // No progress in time is this scenario's failure (read below), not an unhandled rejection
      // that ends the whole suite before it reports.
      recovery.catch(() => undefined);
    },
  };
  let error: string | null = null;
  let outputs: OutputLine[] = [];
  let ticker: NodeJS.Timeout | undefined;
  const timeline: string[] = [];
  try {
    for (const role of ['sink', 'delay', 'dispatcher', 'ingest'] as const)
      await cluster.start(role, sc.firstStart?.[role]);
    // Progress every 5 s: printed as it goes with CHAOS_DEBUG, and after a failure always.
    ticker = setInterval(() => {
      void written();
      const calls = sim.sim.ledger.stats().find((k) => k.key === simKey)?.byReason ?? {};
      const line = `${new Date().toISOString().slice(11, 19)} written ${lastWritten}/${ctx.submittedRows()} calls ${JSON.stringify(calls)}`;
      timeline.push(line);
      if (timeline.length > 24) timeline.shift();
      if (process.env['CHAOS_DEBUG']) log(`  [debug] ${line}`);
    }, 5_000);
    await sc.run(ctx);
    await waitFor(
      'every job announced',
      () => ([...ledger.keys()].every((j) => announced.includes(j)) ? true : undefined),
      { timeoutMs: quick ? 180_000 : 600_000, intervalMs: 250 },
    ).catch((err: Error) => (error = err.message));
    await new Promise((r) => setTimeout(r, 2_000)); // late duplicates and second announcements arrive now
  } catch (err) {
    error = (err as Error).message;
  }
  clearInterval(ticker);
  const recoverySeconds = recovery
    ? await recovery.catch((err: Error) => {
        error ??= err.message; // no progress after the fault is this scenario's failure
        return null;
      })
    : null;
  await cluster.stop();
  await proxy?.stop();
  // From the files alone: the manifest's files (every one of them, and nothing else), their lines.
  const fileProblems: string[] = [];
  for (const jobId of ledger.keys()) {
    const raw = await store.get(`${jobId}/manifest.json`);
    const manifest = raw ? (JSON.parse(raw.toString()) as JobFiles['manifest']) : undefined;
    const lines = new Map<string, string[]>();
    for (const [kind, files] of [
      ['result', manifest?.outputs.results ?? []],
      ['error', manifest?.outputs.errors ?? []],
    ] as const) {
      for (const file of files) {
        const body = await store.get(file.name);
        if (!body) continue;
        const fileLines = body
          .toString()
          .split('\n')
          .filter((l) => l);
        lines.set(file.name, fileLines);
        for (const l of fileLines) outputs.push({ id: (JSON.parse(l) as { id: string }).id, kind });
      }
    }
    if (!manifest)
      // No manifest (the job never finished): what its committed parts hold, for the counts.
      for (const part of (await readJobIndex(store, '', jobId)).parts)
        for (const [kind, file] of [
          ['result', part.results],
          ['error', part.errors],
        ] as const) {
          if (!file) continue;
          const text = (await store.get(file.name))?.toString() ?? '';
          for (const l of text.split('\n')) if (l) outputs.push({ id: (JSON.parse(l) as { id: string }).id, kind });
        }
    fileProblems.push(
      ...checkFiles(
        { jobId, manifest, objects: await store.list(`${jobId}/`), lines },
        expectations.get(jobId) ?? inputRow,
      ),
    );
  }
  // Every result is an answer the provider gave: no more of them than calls it admitted.
  const admittedCalls = sim.sim.ledger
    .stats()
    .filter((k) => k.key === simKey)
    .reduce((n, k) => n + (k.byOutcome['admitted'] ?? 0), 0);
  const result = check({ submitted: ledger, outputs, announcements: announced, fileProblems, admittedCalls });
  if (!result.ok || error !== null) {
    // What a failed run needs for its diagnosis, in the suite's own output (CI keeps nothing else).
    log(`  progress, every 5 s:\n${timeline.map((l) => `    ${l}`).join('\n')}`);
    log(`  the roles' warnings since the scenario began:\n${cluster.digest()}`);
  }
  outputs = [];
  await sub.close();
  await sub.delete().catch(() => undefined);
  await t.delete().catch(() => undefined);
  const calls = sim.sim.ledger.stats().find((k) => k.key === simKey)?.requests ?? 0;
  return {
    scenario: sc.name,
    what: sc.what,
    ...result,
    callsPerPrompt: Math.round((calls / Math.max(1, result.submitted)) * 100) / 100,
    recoverySeconds,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    peakRssMb: Object.fromEntries(Object.entries(cluster.peakRssMb).map(([k, v]) => [k, Math.round(v)])) as Record<
      Role,
      number
    >,
    ok: result.ok && error === null,
    error,
  };
}

const only = values.only?.split(',');
const chosen = scenarios.filter((sc) => (only ? only.includes(sc.name) : !quick || sc.quick));
if (chosen.length === 0) {
  console.error(`chaos: no scenario named ${values.only}; known: ${scenarios.map((x) => x.name).join(', ')}`);
  process.exit(2);
}
console.log(`chaos: ${chosen.length} scenarios${quick ? ' (quick)' : ''}, loopback only`);
const rows: Row[] = [];
const suiteStart = Date.now();
for (const sc of chosen) {
  log(`\n${sc.name}: ${sc.what}`);
  const row = await runScenario(sc);
  rows.push(row);
  const a = Object.values(row.announcementsPerJob);
  log(
    `  ${row.ok ? 'ok' : 'FAILED'}: ${row.delivered}/${row.submitted} delivered, lost ${row.lost}, duplicates ${row.duplicates}, ` +
      `announcements ${a.join('/')}, ${row.callsPerPrompt} calls/prompt, ${row.seconds} s` +
      (row.error ? `\n  ${row.error}` : '') +
      (row.lost || row.duplicates
        ? `\n  e.g. lost ${row.examples.lost.join(' ')} duplicated ${row.examples.duplicates.join(' ')}`
        : '') +
      (row.fileProblems
        ? `\n  files: ${row.fileProblems} problems, e.g.\n    ${row.examples.files.join('\n    ')}`
        : ''),
  );
}
await sim.close();
await pubsub.close();

const table = [
  '| scenario | submitted | delivered | lost | duplicates | announcements per job | calls per prompt | recovery s | s | peak RSS MB (ingest/dispatcher/delay/sink) | ok |',
  '| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |',
  ...rows.map(
    (r) =>
      `| ${r.scenario} | ${r.submitted} | ${r.delivered} | ${r.lost} | ${r.duplicates} | ${Object.values(r.announcementsPerJob).join(', ')} | ${r.callsPerPrompt} | ${r.recoverySeconds ?? '-'} | ${r.seconds} | ${r.peakRssMb.ingest}/${r.peakRssMb.dispatcher}/${r.peakRssMb.delay}/${r.peakRssMb.sink} | ${r.ok ? 'yes' : '**no**'} |`,
  ),
].join('\n');
console.log(`\n${table}\n`);
mkdirSync(dirname(values.json!), { recursive: true });
writeFileSync(
  values.json!,
  JSON.stringify(
    { quick, seconds: Math.round((Date.now() - suiteStart) / 1_000), node: process.version, rows },
    null,
    2,
  ) + '\n',
);
const failed = rows.filter((r) => !r.ok).length;
console.log(`chaos: ${rows.length - failed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
