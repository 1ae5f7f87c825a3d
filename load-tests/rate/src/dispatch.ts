/**
 * npm run bench:dispatch -- [--quick] [--prompts N] [--latency-ms N] [--json FILE]
 *
 * The dispatcher's own cost per call: one dispatcher process (its main.ts, as deployed) against a
 * simulator key with no limit and answers after `--latency-ms` (0: an infinitely fast provider),
 * on prompts of realistic sizes (median about 1.5 KB, a tail to 16 KB) with completions of 50 to
 * 500 tokens. It reads the process's CPU time from /proc from its first call to its last outcome
 * and reports CPU ms per call, calls a second and peak RSS; every outcome is read back from the
 * job's results topic, and a lost or duplicated prompt fails the run. BENCH_DISPATCHER_PROFILE=DIR
 * writes the dispatcher's CPU profile there.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createKafka, resultsTopic } from '@sluice/kafka';
import { startProviderSim } from '@sluice/provider-sim';
import { createSchemaCodecs } from '@sluice/schemas';
import { cpuSeconds, launchSluice, localStack, type BenchPrompt } from './contenders.js';
import { round } from './figures.js';
import { helpIfAsked } from '@sluice/testing';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
helpIfAsked(import.meta.url);
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    prompts: { type: 'string' },
    'latency-ms': { type: 'string', default: '0' },
    json: { type: 'string', default: join(root, 'load-tests/results/dispatch.json') },
  },
});
const n = Number(args.prompts ?? (args.quick ? 5_000 : 30_000));
const latencyMs = Number(args['latency-ms']);

const { settings: s, env: stackEnv } = localStack(root);

/** Seeded prompt sizes: log-normal around 1.5 KB, cut at 16 KB; completions 50 to 500 tokens. */
function prompts(count: number): BenchPrompt[] {
  let x = 0x2545f491;
  const rand = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  const normal = () => Math.sqrt(-2 * Math.log(rand() || 1e-9)) * Math.cos(2 * Math.PI * rand());
  const words = ['river', 'signal', 'market', 'quiet', 'engine', 'harbor', 'ledger', 'window', 'summit', 'orbit'];
  const base = words.join(' ').repeat(400);
  return Array.from({ length: count }, (_, i) => {
    const chars = Math.min(16_384, Math.max(200, Math.round(1_500 * Math.exp(0.8 * normal()))));
    const start = Math.floor(rand() * 1_000);
    return {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `Summarize filing ${i}: ${base.slice(start, start + chars)}` }],
      max_tokens: 50 + Math.floor(rand() * 450),
    };
  });
}

const sim = await startProviderSim({
  config: { seed: 11, latency: { baseMs: latencyMs, perTokenMs: 0, sigma: 0 }, keys: {} },
});
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: 'bench-dispatch' });
const codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
const id = randomBytes(4).toString('hex');
const apiKey = `sk-bench-dispatch-${id}`;
sim.sim.setKey(apiKey, { dialect: 'openai', limits: { rpm: 100_000_000, tpm: 100_000_000_000 } });
const list = prompts(n);
const bytes = list.reduce((a, p) => a + p.messages[0]!.content.length, 0);
console.log(
  `bench:dispatch: ${n} prompts (${round(bytes / n / 1_024, 2)} KB on average), provider latency ${latencyMs} ms`,
);
const workdir = join(root, '.sluice', 'bench-dispatch', id);
mkdirSync(workdir, { recursive: true });
const launch = await launchSluice(
  {
    root,
    simUrl: sim.url,
    apiKey,
    dialect: 'openai',
    prompts: list,
    told: { rpm: 0, tpm: 0 },
    replicas: 1,
    workdir,
  },
  { kafka, codecs, stackEnv, id },
);
const proc = launch.procs[0]!;
const stderr: string[] = [];
proc.stderr?.on('data', (c: Buffer) => stderr.push(c.toString()));

// Every outcome, read back from the job's results topic.
const seen = new Map<number, number>();
const consumer = kafka.consumer({ groupId: `bench-dispatch-${id}` });
await consumer.connect();
await consumer.subscribe({ topic: resultsTopic(`job_bench${id}`), fromBeginning: true });
let lastOutcomeAt = 0;
await consumer.run({
  eachMessage: async ({ message }) => {
    if (!message.value) return;
    const o = await codecs.promptOutcome.decode(message.value);
    seen.set(o.rowIndex, (seen.get(o.rowIndex) ?? 0) + 1);
    lastOutcomeAt = Date.now();
  },
});

let firstCallAt: number | undefined;
let cpuAtFirst = 0;
let cpuLast = 0;
let rssPeakMb = 0;
const deadline = Date.now() + Math.max(120_000, n * 10);
while (seen.size < n) {
  if (Date.now() > deadline || proc.exitCode !== null) {
    await launch.stop();
    await consumer.disconnect();
    await sim.close();
    throw new Error(`bench:dispatch: ${seen.size} of ${n} outcomes; dispatcher: ${stderr.join('').slice(-800)}`);
  }
  const c = cpuSeconds(proc.pid!);
  if (c !== undefined) cpuLast = c;
  try {
    const status = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1_024;
    rssPeakMb = Math.max(rssPeakMb, rss);
  } catch {
    // gone
  }
  if (firstCallAt === undefined && sim.sim.ledger.since(0).some((r) => r.key === apiKey)) {
    firstCallAt = Date.now();
    cpuAtFirst = cpuLast;
  }
  await new Promise((r) => setTimeout(r, 50));
}
const cpu = (cpuSeconds(proc.pid!) ?? cpuLast) - cpuAtFirst;
const seconds = (lastOutcomeAt - (firstCallAt ?? lastOutcomeAt)) / 1_000;
await new Promise((r) => setTimeout(r, 2_000)); // a duplicate comes after the last first outcome, if at all
await launch.stop();
await consumer.disconnect();
await sim.close();
const duplicated = [...seen.values()].filter((c) => c > 1).length;
const figures = {
  at: new Date().toISOString(),
  prompts: n,
  promptKbAverage: round(bytes / n / 1_024, 2),
  providerLatencyMs: latencyMs,
  seconds: round(seconds, 1),
  callsPerSecond: round(n / Math.max(0.001, seconds), 0),
  cpuMsPerCall: round((cpu * 1_000) / n, 3),
  rssPeakMb: round(rssPeakMb, 0),
  lost: n - seen.size,
  duplicated,
};
console.log(
  `  ${figures.callsPerSecond} calls/s; ${figures.cpuMsPerCall} CPU ms per call; peak RSS ${figures.rssPeakMb} MB; ` +
    `${figures.lost} lost, ${duplicated} duplicated`,
);
mkdirSync(dirname(args.json), { recursive: true });
writeFileSync(args.json, JSON.stringify(figures, null, 2) + '\n');
if (figures.lost > 0 || duplicated > 0) process.exit(1);
process.exit(0);
