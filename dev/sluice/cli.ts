// sluice dev | demo | lag | dead-letters: Sluice on a laptop, on the local stack.
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PubSub, type Message } from '@google-cloud/pubsub';
import { createLogger } from '@sluice/logging';
import { Redis } from 'ioredis';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { parseEnvFile } from '@sluice/testing';
import { envFile, repoRoot } from '../stack/paths.js';
import { stackUp } from '../stack/stack.js';
import { startDev, type DevLane } from './dev.js';
import { formatLetters, readDeadLetters, redrive } from './dead-letters.js';
import { formatLag, lagReport } from './lag.js';

const usage = `usage:
  sluice dev  [--provider sim|openai] [--port 8080]
      every role of Sluice in one process on the local stack, until Ctrl-C
  sluice demo [--provider sim|openai] [--rows N] [--input FILE.jsonl]
      starts the stack if needed, the provider simulator and sluice dev, submits the bundled
      example (3,000 headlines, 7 bad rows), shows progress and prints where the results are
  sluice lag  [--json]
      per consumer group of Sluice and topic, how far its committed offsets are behind the log's
      end; per unfinished job, the prompts waiting for an outcome (the stack's settings, or
      SLUICE_KAFKA_BROKERS and SLUICE_REDIS_URL)
  sluice dead-letters [--reason CODE] [--job ID] [--stage dispatcher|delay] [--json]
                      [--redrive [--dry-run] [--again]]
      the records on sluice.dead-letter (reason, job, where from and to; never prompt text);
      --redrive sends the ones picked to where they were going, once their cause is fixed
      (each once: --again sends ones re-driven before)

  --provider sim     the provider simulator (default): no key, no cost
  --provider openai  OpenAI itself, with OPENAI_API_KEY (the demo sends at most --rows prompts, default 50)
`;

const example = join(fileURLToPath(new URL('.', import.meta.url)), 'examples', 'headlines.jsonl');

function fail(message: string): never {
  console.error(`sluice: ${message}`);
  process.exit(2);
}

/** The stack's settings, starting it when they are missing; SLUICE_* set by the user win. */
async function stackEnv(): Promise<Record<string, string | undefined>> {
  console.log('local stack: starting what is not running (npm run stack:status shows it)');
  await stackUp(() => undefined);
  if (!existsSync(envFile)) fail(`the stack wrote no ${envFile}; run npm run stack:up to see why`);
  const env = { ...parseEnvFile(readFileSync(envFile, 'utf8')), ...process.env };
  // Read by google-auth from this process's environment, not from the settings handed to the roles.
  if (env['METADATA_SERVER_DETECTION'] !== undefined)
    process.env['METADATA_SERVER_DETECTION'] = env['METADATA_SERVER_DETECTION'];
  return env;
}

async function lanes(provider: string): Promise<{ lanes: DevLane[]; sim?: ProviderSimServer; model: string }> {
  if (provider === 'openai') {
    const apiKey = process.env['OPENAI_API_KEY'];
    if (!apiKey) fail('--provider openai needs OPENAI_API_KEY set to your key');
    return { lanes: [{ provider: 'openai', apiKey }], model: 'gpt-4o-mini' };
  }
  if (provider !== 'sim') fail(`--provider ${provider}: give sim or openai`);
  // Limits like a modest OpenAI tier; the dispatcher is told none and reads them from the headers.
  const sim = await startProviderSim({
    config: {
      seed: 7,
      latency: { baseMs: 150, perTokenMs: 5, sigma: 0.4 },
      keys: {
        'sk-demo': {
          dialect: 'openai',
          limits: { rpm: 30_000, tpm: 3_000_000, burstWindowMs: 10_000 },
          faults: { errorRate: 0.01 },
        },
      },
    },
  });
  console.log(`provider simulator: ${sim.url} (OpenAI dialect, 30,000 requests and 3M tokens a minute)`);
  return {
    lanes: [{ provider: 'openai', apiKey: 'sk-demo', baseUrl: `${sim.url}/v1`, keyId: 'sim-demo' }],
    sim,
    model: 'gpt-4o-mini',
  };
}

const fmt = (n: number) => n.toLocaleString('en-US');

async function dev(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { provider: { type: 'string', default: 'sim' }, port: { type: 'string', default: '8080' } },
  });
  const env = await stackEnv();
  const { lanes: l, sim } = await lanes(values.provider!);
  const running = await startDev({
    env,
    lanes: l,
    log: createLogger('sluice-dev'),
    port: Number(values.port),
  });
  console.log(`sluice dev: ingest API on ${running.url} (OpenAPI at ${running.url}/docs)`);
  if (running.apiKey) console.log(`  API key: ${running.apiKey}  (tenant "dev"; set SLUICE_API_KEYS for others)`);
  console.log(`  results: ${running.resultsUri}`);
  console.log('  Ctrl-C stops it');
  const stop = async () => {
    await running.close();
    await sim?.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

async function demo(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      provider: { type: 'string', default: 'sim' },
      rows: { type: 'string' },
      input: { type: 'string', default: example },
    },
  });
  const provider = values.provider!;
  const rows = Number(values.rows ?? (provider === 'openai' ? 50 : Infinity));
  if (!(rows > 0)) fail(`--rows ${values.rows}: give a whole number of at least 1`);
  if (!existsSync(values.input!)) fail(`--input ${values.input}: no such file`);
  // The demo's sink writes the demo's tenant only: other jobs on the stack are left to their sinks.
  const env: Record<string, string | undefined> = { SLUICE_SINK_TENANTS: 'dev', ...(await stackEnv()) };
  const topic = env['SLUICE_PUBSUB_TOPIC'] ?? 'sluice-jobs-finished';
  const { lanes: l, sim, model } = await lanes(provider);
  const running = await startDev({ env, lanes: l, log: createLogger('sluice-dev', { level: 'warn' }), port: 0 });
  const pubsub = new PubSub({
    projectId: env['SLUICE_PUBSUB_PROJECT'],
    apiEndpoint: env['PUBSUB_EMULATOR_HOST'],
    emulatorMode: true,
  });
  const cleanup = async () => {
    await running.close();
    await sim?.close();
    await pubsub.close();
  };
  try {
    console.log(`sluice dev: ingest API on ${running.url}, results in ${running.resultsUri}`);
    const t = pubsub.topic(topic);
    if (!(await t.exists())[0]) await pubsub.createTopic(topic).catch(() => undefined);
    const [sub] = await t.createSubscription(`sluice-demo-${Date.now().toString(36)}`);
    const announced: Message[] = [];
    sub.on('message', (m: Message) => {
      announced.push(m);
      m.ack();
    });

    const key = running.apiKey ?? fail('the demo runs with the dev API key: unset SLUICE_API_KEYS');
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const created = await fetch(`${running.url}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ provider: 'openai', model, metadata: { example: 'headlines' } }),
    });
    const job = (await created.json()) as { id: string };
    let input = readFileSync(values.input!, 'utf8');
    if (Number.isFinite(rows)) input = input.split('\n').slice(0, rows).join('\n') + '\n';
    console.log(
      `job ${job.id}: uploading ${relative(process.cwd(), values.input!)} (${fmt(input.trim().split('\n').length)} rows)`,
    );
    const upload = (await (
      await fetch(`${running.url}/v1/jobs/${job.id}/input`, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/jsonl' },
        body: input,
      })
    ).json()) as { accepted: number; invalid: number; errors: Array<{ line: number; code: string; message: string }> };
    console.log(`  accepted ${fmt(upload.accepted)} prompts; ${upload.invalid} bad rows became error records:`);
    for (const e of upload.errors.slice(0, 10)) console.log(`    line ${e.line}: ${e.code} ${e.message}`);

    const started = Date.now();
    const startedSim = sim?.sim.elapsed();
    let firstResultAt: number | undefined;
    const tty = process.stdout.isTTY;
    let lastPrint = 0;
    for (;;) {
      const view = (await (await fetch(`${running.url}/v1/jobs/${job.id}`, { headers })).json()) as {
        status: string;
        finalizedAt: string | null;
        counts: { total: number; succeeded: number; failed: number };
      };
      const done = view.counts.succeeded + view.counts.failed;
      if (view.counts.succeeded > 0) firstResultAt ??= Date.now();
      const secs = (Date.now() - started) / 1_000;
      if (tty || Date.now() - lastPrint > 2_000 || view.finalizedAt) {
        const line = `  ${fmt(done)} / ${fmt(view.counts.total)} done: ${fmt(view.counts.succeeded)} ok, ${fmt(view.counts.failed)} failed, ${Math.round(done / Math.max(secs, 0.001))}/s`;
        process.stdout.write(tty ? `\r${line}   ` : `${line}\n`);
        lastPrint = Date.now();
      }
      if (view.finalizedAt && announced.some((m) => m.attributes['jobId'] === job.id)) break;
      if (secs > 600) throw new Error(`job ${job.id} did not finish within 10 minutes (it is ${view.status})`);
      await new Promise((r) => setTimeout(r, firstResultAt === undefined ? 50 : 300));
    }
    if (tty) process.stdout.write('\n');
    const message = announced.find((m) => m.attributes['jobId'] === job.id)!;
    const a = JSON.parse(message.data.toString()) as { status: string; manifestUri: string };
    const results = (await (await fetch(`${running.url}/v1/jobs/${job.id}/results`, { headers })).json()) as {
      files: Array<{ kind: string; uri: string; records: number }>;
    };
    const manifest = (await (await fetch(`${running.url}/v1/jobs/${job.id}/results/manifest`, { headers })).json()) as {
      counts: Record<string, number>;
      tokens: { total: number };
      estimatedCostUsd: number | null;
      timings: { durationMs: number };
    };
    await sub.close();
    await sub.delete().catch(() => undefined);
    console.log(`\njob ${job.id}: ${a.status} (announced on Pub/Sub topic ${topic})`);
    console.log(
      `  ${fmt(manifest.counts['succeeded'] ?? 0)} results, ${fmt((manifest.counts['failed'] ?? 0) + (manifest.counts['invalid'] ?? 0))} errors, ` +
        `${fmt(manifest.tokens.total)} tokens, ~$${(manifest.estimatedCostUsd ?? 0).toFixed(4)} at list prices${sim ? ' (simulated: nothing was spent)' : ''}, ` +
        `${(manifest.timings.durationMs / 1_000).toFixed(1)} s`,
    );
    if (sim) {
      // The provider's side: how fast the job's calls went once they started, against the key's
      // limit (30,000 a minute: 500 a second).
      const calls = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-demo' && r.outcome === 'admitted');
      if (calls.length > 20) {
        // The pace over the first 95 % of the calls: the last ones are retries of the simulator's
        // 1 % of 500s, which come back through the delay topics a second or more later.
        const k = Math.floor(0.95 * calls.length);
        const perS = k / ((calls[k]!.t - calls[0]!.t) / 1_000);
        const spanS = (calls[calls.length - 1]!.t - calls[0]!.t) / 1_000;
        // Calls begin once the upload's first rows are in, often before its end.
        const since = (ms: number) =>
          ms < 0 ? `${(-ms / 1_000).toFixed(1)} s before it ended` : `${(ms / 1_000).toFixed(1)} s after it ended`;
        console.log(
          `  calls: ${Math.round(perS)}/s once started (${(perS / 500).toFixed(2)} of the key's 500/s) over the first 95 %, ` +
            `all ${fmt(calls.length)} in ${spanS.toFixed(1)} s; the upload's first call ${since(calls[0]!.t - (startedSim ?? NaN))}, ` +
            `its first result seen ${since((firstResultAt ?? NaN) - started)}`,
        );
      }
    }
    console.log(`  manifest: ${a.manifestUri}`);
    for (const f of results.files) console.log(`  ${f.kind.padEnd(7)} ${f.uri}  (${fmt(f.records)} records)`);
    console.log(`\nfetch them through the API while sluice dev runs:`);
    console.log(`  curl -H 'authorization: Bearer ${key}' ${running.url}/v1/jobs/${job.id}/results/results`);
  } finally {
    await cleanup();
  }
}

async function lag(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } } });
  const env = { ...(existsSync(envFile) ? parseEnvFile(readFileSync(envFile, 'utf8')) : {}), ...process.env };
  const brokers = env['SLUICE_KAFKA_BROKERS'];
  const redisUrl = env['SLUICE_REDIS_URL'];
  if (!brokers || !redisUrl)
    fail('no stack settings: start the stack (npm run stack:up), or set SLUICE_KAFKA_BROKERS and SLUICE_REDIS_URL');
  const admin = createKafka({ brokers: brokers.split(','), clientId: 'sluice-lag' }).admin();
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    await admin.connect();
    await redis.connect();
    const report = await lagReport(admin, redis);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatLag(report));
  } finally {
    await admin.disconnect();
    redis.disconnect();
  }
}

async function deadLetters(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      reason: { type: 'string' },
      job: { type: 'string' },
      stage: { type: 'string' },
      json: { type: 'boolean', default: false },
      redrive: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      again: { type: 'boolean', default: false },
    },
  });
  const env = { ...(existsSync(envFile) ? parseEnvFile(readFileSync(envFile, 'utf8')) : {}), ...process.env };
  const brokers = env['SLUICE_KAFKA_BROKERS'];
  const redisUrl = env['SLUICE_REDIS_URL'];
  if (!brokers || !redisUrl)
    fail('no stack settings: start the stack (npm run stack:up), or set SLUICE_KAFKA_BROKERS and SLUICE_REDIS_URL');
  if (values.redrive && !values.reason && !values.job)
    fail('--redrive sends only what --reason or --job picks: name one (sluice dead-letters lists them)');
  const kafka = createKafka({ brokers: brokers.split(','), clientId: 'sluice-dead-letters' });
  const letters = await readDeadLetters(kafka, { reason: values.reason, jobId: values.job, stage: values.stage });
  if (!values.redrive) {
    const plain = letters.map(({ record: _record, ...rest }) => rest);
    console.log(values.json ? JSON.stringify(plain, null, 2) : formatLetters(letters));
    return;
  }
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  try {
    const r = await redrive(kafka, redis, letters, { again: values.again, dryRun: values['dry-run'] });
    console.log(
      values.json
        ? JSON.stringify(r, null, 2)
        : [
            `${values['dry-run'] ? 'would re-drive' : 're-drove'} ${r.redriven} of ${letters.length}` +
              (r.skipped ? `; ${r.skipped} re-driven before (--again sends them again)` : ''),
            ...r.refused.map((x) => `  not sent ${x.partition}/${x.offset}: ${x.why}`),
          ].join('\n'),
    );
  } finally {
    redis.disconnect();
  }
}

const commands: Record<string, (args: string[]) => Promise<void>> = { dev, demo, lag, 'dead-letters': deadLetters };
const [command, ...rest] = process.argv.slice(2);
const run = command === undefined ? undefined : commands[command];
const help = (a: string) => a === '--help' || a === '-h';
if (!run || rest.some(help)) {
  process.stdout.write(usage);
  process.exit(command === undefined || help(command) || rest.some(help) ? 0 : 2);
}
process.chdir(repoRoot);
run(rest).then(
  () => {
    if (command !== 'dev') process.exit(0);
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    // parseArgs's refusals (an unknown option, a missing value) are the caller's to fix.
    const usageError = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    console.error(`sluice ${command}: ${message}${usageError ? ` (sluice ${command} --help lists the options)` : ''}`);
    process.exit(usageError ? 2 : 1);
  },
);
