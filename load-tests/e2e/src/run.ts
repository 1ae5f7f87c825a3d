/**
 * npm run bench:e2e -- [--quick] [--prompts N] [--jobs N] [--lanes 1|2] [--dispatchers N] [--latency zero|real]
 *                      [--processes roles|one] [--shape realistic|short] [--deadline-min M] [--no-ceilings] [--json FILE]
 *
 * The whole pipeline on the local stack with a realistic backfill: each role (ingest API,
 * dispatcher, delay, sink) its own process as in production, the provider simulator unlimited,
 * answering at once (`--latency zero`: an infinitely fast provider, the pipeline's own ceiling)
 * or as a real model does (`--latency real`: about 1 s at the median, a heavy tail). Prompts as
 * users send them (see workload.ts: median 1.5 KB, p99 16 KB, a few near the 1 MiB line limit,
 * 50-2,000 tokens asked for), over several jobs of two tenants uploaded at once, on two lanes at
 * once (`--lanes 2`, the default: an OpenAI lane and a Gemini lane, each with its dispatcher).
 *
 * The memory curve: each role's RSS each time another tenth of the prompts is written (with
 * `--shape short --prompts 10000000`: 10M prompts of about 90 bytes, RSS at 10M against 1M).
 *
 * Before the pipeline, in the same run, the raw ceilings (ceilings.ts): plain fetch against the
 * simulator, kafkajs producing and consuming the same prompt bytes; the pipeline's figures are
 * given as ratios to them.
 *
 * It measures, from the first byte uploaded to the last job's announcement on Pub/Sub: prompts/s
 * end to end; the upload's MB/s; the first result's delay after the uploads end; CPU per call of
 * the dispatcher and records per CPU second of the sink (from /proc); each role's peak RSS; and
 * what a user checks: every prompt has exactly one result or error line in GCS (lost 0,
 * duplicates 0) and each job is announced once. Prints the figures and writes JSON.
 *
 * Needs the local stack (npm run stack:up). Loopback only; stops by itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PubSub, type Message } from '@google-cloud/pubsub';
import { createGcsObjectStore, readJobIndex, RowSet } from '@sluice/object-store';
import { startProviderSim, type LatencyModel } from '@sluice/provider-sim';
import { connectionEnv, freePort, helpIfAsked, parseEnvFile, stackSettings, waitFor } from '@sluice/testing';
import { startOneProcess, startRoles, type Pipeline } from './pipeline.js';
import { fetchCeiling, kafkaCeiling, type Ceiling } from './ceilings.js';
import { GcsCounter, minus } from './gcs-counter.js';
import { defaultShape, quantile, rows, shortShape, type RowStats } from './workload.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
helpIfAsked(import.meta.url);
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    prompts: { type: 'string' },
    jobs: { type: 'string', default: '4' },
    dispatchers: { type: 'string', default: '1' },
    lanes: { type: 'string', default: '2' },
    'no-ceilings': { type: 'boolean', default: false },
    shape: { type: 'string', default: 'realistic' },
    processes: { type: 'string', default: 'roles' },
    'deadline-min': { type: 'string' },
    latency: { type: 'string', default: 'zero' },
    json: { type: 'string' },
  },
});
const prompts = Number(args.prompts ?? (args.quick ? 20_000 : 1_000_000));
const jobs = Math.max(1, Number(args.jobs));
if (!(prompts >= jobs)) throw new Error(`--prompts ${args.prompts} must be at least --jobs ${jobs}`);
if (args.processes !== 'roles' && args.processes !== 'one') throw new Error('--processes is roles or one');
if (args.shape !== 'realistic' && args.shape !== 'short') throw new Error('--shape is realistic or short');
const shape = args.shape === 'short' ? shortShape : defaultShape;
const lanes = Number(args.lanes);
if (lanes !== 1 && lanes !== 2) throw new Error('--lanes is 1 (OpenAI) or 2 (OpenAI and Gemini)');
if (args.latency !== 'zero' && args.latency !== 'real') throw new Error('--latency is zero or real');
const jsonFile = args.json ?? join(root, 'load-tests/results', `e2e-${args.latency}${args.quick ? '-quick' : ''}.json`);

process.env['METADATA_SERVER_DETECTION'] = 'none';
const envFile = join(root, '.sluice', 'stack.env');
if (!process.env['SLUICE_KAFKA_BROKERS'] && existsSync(envFile))
  Object.assign(process.env, parseEnvFile(readFileSync(envFile, 'utf8')));
const s = stackSettings();

const latency: Partial<LatencyModel> =
  args.latency === 'zero'
    ? { baseMs: 0, perTokenMs: 0, sigma: 0 }
    : // About 1 s at the median for completions of a few hundred tokens; 2 % ten times slower.
      { baseMs: 500, perTokenMs: 1, sigma: 0.5, tailProbability: 0.02, tailMultiplier: 10 };
const sim = await startProviderSim({ config: { seed: 3, keys: {} }, ledgerRows: false });
const id = randomBytes(4).toString('hex');
const lane = `e2e${id}`;
const simKey = `sk-e2e-${id}`;
sim.sim.setKey(simKey, { dialect: 'openai', limits: {}, latency });
// The second lane: Gemini's dialect (its SDK, its URL shapes, its usage fields), its own key.
const geminiLane = `e2eg${id}`;
const geminiKey = `gm-e2e-${id}`;
sim.sim.setKey(geminiKey, { dialect: 'gemini', limits: {}, latency });
const laneOf = (job: number) =>
  lanes === 2 && Math.floor(job / 2) % 2 === 1
    ? { lane: geminiLane, model: 'gemini-2.0-flash' }
    : { lane, model: 'gpt-4o-mini' };
const keys = lanes === 2 ? [simKey, geminiKey] : [simKey];
const callsNow = () => keys.reduce((n, k) => n + sim.sim.ledger.requestsOf(k).requests, 0);

// The raw ceilings, on a sample of the same prompts (none of the near-1 MiB ones).
let ceilings: { fetch: Ceiling; kafkaProduce: Ceiling; kafkaConsume: Ceiling } | null = null;
if (!args['no-ceilings']) {
  const sampleRows = Math.min(prompts, 20_000);
  let text = '';
  for await (const chunk of rows(99, sampleRows, shape, {
    rows: 0,
    bytes: 0,
    largestPromptBytes: 0,
    promptBytes: [],
  }))
    text += String(chunk);
  const sample = text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const r = JSON.parse(l) as { prompt: string; max_tokens: number };
      return { prompt: r.prompt, maxTokens: r.max_tokens };
    });
  const ceilingKey = `sk-ceiling-${id}`;
  sim.sim.setKey(ceilingKey, { dialect: 'openai', limits: {}, latency });
  const fetched = await fetchCeiling(
    `${sim.url}/v1`,
    ceilingKey,
    'gpt-4o-mini',
    sample,
    args.latency === 'zero' ? 256 : 4_096,
  );
  const kafka = await kafkaCeiling(
    s.kafkaBrokers,
    `e2e-ceiling-${id}`,
    12,
    sample.map((x) => Buffer.from(x.prompt)),
  );
  ceilings = { fetch: fetched, kafkaProduce: kafka.produce, kafkaConsume: kafka.consume };
  console.log(
    `ceilings on ${sample.length} of the same prompts: plain fetch ${fetched.perSecond} calls/s; ` +
      `kafkajs produce ${kafka.produce.perSecond} records/s (${kafka.produce.megabytesPerSecond} MB/s), ` +
      `consume ${kafka.consume.perSecond} records/s (${kafka.consume.megabytesPerSecond} MB/s)`,
  );
}
const tenants = ['e2e-a', 'e2e-b'].map((t) => ({ tenant: `${t}-${id}`, apiKey: `sk-${t}-${id}` }));
const bucket = `e2e-${id}`;
const topic = `e2e-finished-${id}`;
const store = createGcsObjectStore({ bucket, apiEndpoint: s.gcsEndpoint, projectId: s.pubsubProject });
await store.ensureBucket();
const pubsub = new PubSub({ projectId: s.pubsubProject, apiEndpoint: s.pubsubEmulatorHost, emulatorMode: true });
const [t] = await pubsub.createTopic(topic);
const [sub] = await t.createSubscription(`${topic}-bench`);
const announced: string[] = [];
let lastAnnouncedAt = 0;
sub.on('message', (m: Message) => {
  announced.push(m.attributes['jobId'] ?? '');
  lastAnnouncedAt = performance.now();
  m.ack();
});

// The roles reach the GCS emulator through a counter: requests per 1,000 prompts is what GCS bills.
const gcs = new GcsCounter(s.gcsEndpoint);
const gcsEndpoint = await gcs.start();
const port = await freePort(24_500, 26_000);
const api = `http://127.0.0.1:${port}`;
const env: Record<string, string> = {
  ...connectionEnv(s),
  SLUICE_GCS_ENDPOINT: gcsEndpoint,
  SLUICE_API_KEYS: tenants.map((x) => `${x.tenant}:${createHash('sha256').update(x.apiKey).digest('hex')}`).join(','),
  SLUICE_MODELS: JSON.stringify({ [lane]: ['gpt-4o-mini'], [geminiLane]: ['gemini-2.0-flash'] }),
  SLUICE_INGEST_PORT: String(port),
  SLUICE_PROVIDER: 'openai',
  SLUICE_LANE: lane,
  SLUICE_PROVIDER_API_KEY: simKey,
  SLUICE_PROVIDER_KEY_ID: simKey,
  SLUICE_PROVIDER_BASE_URL: `${sim.url}/v1`,
  // Calls in flight: at about 1 s each, 2,000 prompts/s needs about 2,000 of them.
  SLUICE_DISPATCH_CONCURRENCY: '4096',
  SLUICE_RESULTS_BUCKET: bucket,
  SLUICE_PUBSUB_TOPIC: topic,
  SLUICE_SINK_TENANTS: tenants.map((x) => x.tenant).join(','),
  LOG_LEVEL: 'warn',
};
const log = (line: string) => console.log(line);
// --dispatchers N: replicas of the first lane's dispatcher (the lane's partitions split among them).
const dispatchers = Math.max(1, Number(args.dispatchers));
const geminiEnv = {
  SLUICE_PROVIDER: 'gemini',
  SLUICE_LANE: geminiLane,
  SLUICE_PROVIDER_API_KEY: geminiKey,
  SLUICE_PROVIDER_KEY_ID: geminiKey,
  SLUICE_PROVIDER_BASE_URL: sim.url,
};
const pipeline: Pipeline =
  args.processes === 'one'
    ? await startOneProcess(env, api, [
        { provider: lane, adapter: 'openai', apiKey: simKey, baseUrl: `${sim.url}/v1` },
        ...(lanes === 2 ? [{ provider: geminiLane, adapter: 'gemini', apiKey: geminiKey, baseUrl: sim.url }] : []),
      ])
    : await startRoles(env, api, log, dispatchers, lanes === 2 ? [{ name: 'gemini', env: geminiEnv }] : []);
const parts = pipeline.parts;
await new Promise((r) => setTimeout(r, 3_000)); // the consumer groups join before the clock starts

const ledger = new Map<string, number>();
const owner = new Map<string, (typeof tenants)[number]>();
const stats: RowStats = { rows: 0, bytes: 0, largestPromptBytes: 0, promptBytes: [] };
const cpuAtStart = Object.fromEntries(parts.map((r) => [r, pipeline.cpuSeconds(r)]));
const gcsAtStart = gcs.snapshot();
const started = performance.now();
const seconds = (at: number) => Math.round((at - started) / 100) / 10;

async function upload(job: number, n: number): Promise<void> {
  const who = tenants[job % tenants.length]!;
  const headers = { authorization: `Bearer ${who.apiKey}`, 'content-type': 'application/json' };
  const res = await fetch(`${api}/v1/jobs`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ provider: laneOf(job).lane, model: laneOf(job).model }),
  });
  if (res.status !== 201) throw new Error(`create job: ${res.status} ${await res.text()}`);
  const jobId = ((await res.json()) as { id: string }).id;
  ledger.set(jobId, n);
  owner.set(jobId, who);
  // Job 0 carries a few rows near the line limit (one per 100,000 rows, at least one).
  const jobShape = {
    ...shape,
    hugeRows: job === 0 && shape === defaultShape ? Math.max(1, Math.round(prompts / 100_000)) : 0,
  };
  const answer = await new Promise<{ status: number; body: string }>((ok, fail) => {
    const req = request(
      `${api}/v1/jobs/${jobId}/input`,
      { method: 'PUT', headers: { ...headers, 'content-type': 'application/jsonl' } },
      (r) => {
        let body = '';
        r.on('data', (d: Buffer) => (body += d.toString()));
        r.on('end', () => ok({ status: r.statusCode ?? 0, body }));
      },
    );
    req.on('error', fail);
    rows(job, n, jobShape, stats).pipe(req);
  });
  if (answer.status !== 200) throw new Error(`upload of job ${job}: ${answer.status} ${answer.body.slice(0, 500)}`);
  const summary = JSON.parse(answer.body) as { accepted: number; total: number };
  if (summary.accepted !== n) throw new Error(`job ${job}: ${summary.accepted} of ${n} rows accepted: ${answer.body}`);
}

let written = 0;
async function poll(): Promise<number> {
  let n = 0;
  for (const [jobId, who] of owner) {
    const r = await fetch(`${api}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${who.apiKey}` } }).catch(
      () => undefined,
    );
    if (!r?.ok) return written;
    const j = (await r.json()) as { counts: { succeeded: number; failed: number } };
    n += j.counts.succeeded + j.counts.failed;
  }
  written = n;
  // The memory curve: each role's RSS as each next tenth of the prompts is written.
  while (curve.length < 10 && written >= (prompts * (curve.length + 1)) / 10) {
    // RSS moves by tens of MB with each collection: the median of the 1 s samples over the tenth
    // says more than the one sample at its end (both are kept). A tenth written within one poll
    // (a short run) has no sample of its own: the one at its end stands for it (a median of none
    // read 0, and a growth of -309 MB in --quick).
    const rssMb = Object.fromEntries(parts.map((r) => [r, Math.round(pipeline.rssMb(r))]));
    curve.push({
      written,
      atS: seconds(performance.now()),
      rssMb,
      medianRssMb: Object.fromEntries(
        parts.map((r) => [r, rssSamples[r]?.length ? Math.round(quantile(rssSamples[r], 0.5)) : rssMb[r]!]),
      ),
    });
    for (const r of parts) rssSamples[r] = [];
    log(`  memory curve at ${written}: ${JSON.stringify(curve.at(-1)!.rssMb)}`);
  }
  return n;
}
const curve: Array<{
  written: number;
  atS: number;
  rssMb: Record<string, number>;
  medianRssMb: Record<string, number>;
}> = [];
const rssSamples: Record<string, number[]> = {};
const rssSampler = setInterval(() => {
  for (const r of parts) (rssSamples[r] ??= []).push(pipeline.rssMb(r));
}, 1_000);

let firstResultAt: number | undefined;
let lastCalls = 0;
let lastTick = started;
const ticker = setInterval(() => {
  void poll().then((n) => {
    if (n > 0 && firstResultAt === undefined) firstResultAt = performance.now();
  });
}, 250);
const progress = setInterval(() => {
  const now = performance.now();
  const calls = callsNow();
  const cpu = parts.map((r) => `${r} ${Math.round(pipeline.rssMb(r))} MB`).join(', ');
  log(
    `  ${seconds(now)} s: written ${written}/${prompts}, ${Math.round(((calls - lastCalls) * 1_000) / (now - lastTick))} calls/s; RSS ${cpu}`,
  );
  lastCalls = calls;
  lastTick = now;
}, 5_000);

log(
  `bench:e2e: ${prompts} prompts in ${jobs} jobs of ${tenants.length} tenants on ${lanes} lane(s), provider latency ${args.latency}, ${args.processes === 'one' ? 'every role in one process (sluice dev)' : 'every role its own process'}`,
);
const per = Math.floor(prompts / jobs);
await Promise.all(Array.from({ length: jobs }, (_, j) => upload(j, j === jobs - 1 ? prompts - per * (jobs - 1) : per)));
const uploadedAt = performance.now();
log(`  uploaded ${(stats.bytes / 1024 / 1024).toFixed(1)} MB in ${seconds(uploadedAt)} s`);
let error: string | null = null;
await waitFor(
  'every job announced',
  () => ([...ledger.keys()].every((j) => announced.includes(j)) ? true : undefined),
  {
    timeoutMs: args['deadline-min'] ? Number(args['deadline-min']) * 60_000 : Math.max(600_000, prompts * 5),
    intervalMs: 250,
  },
).catch((err: Error) => (error = err.message));
const endAt = lastAnnouncedAt || performance.now();
const cpu = Object.fromEntries(parts.map((r) => [r, pipeline.cpuSeconds(r) - (cpuAtStart[r] ?? 0)]));
const dispatcherCpu = parts.filter((r) => r.startsWith('dispatcher')).reduce((n, r) => n + (cpu[r] ?? 0), 0);
const totalCpu = parts.reduce((n, r) => n + (cpu[r] ?? 0), 0);
const perRole = args.processes !== 'one';
const gcsRun = minus(gcs.snapshot(), gcsAtStart);
await new Promise((r) => setTimeout(r, 2_000)); // a second announcement would come now
// What a user's GET /v1/jobs/:id/results costs once a job is done: GCS requests and time.
const listings: Array<{ gcsRequests: number; ms: number; files: number }> = [];
for (const [jobId, who] of owner) {
  const before = gcs.snapshot();
  const t0 = performance.now();
  const r = await fetch(`${api}/v1/jobs/${jobId}/results`, { headers: { authorization: `Bearer ${who.apiKey}` } });
  const files = r.ok ? ((await r.json()) as { files: unknown[] }).files.length : -1;
  listings.push({ gcsRequests: minus(gcs.snapshot(), before).total, ms: Math.round(performance.now() - t0), files });
}
clearInterval(ticker);
clearInterval(progress);
clearInterval(rssSampler);
const calls = callsNow();
await pipeline.stop();

// Every output line read back from GCS, tallied by row in a bitset a job (10M ids as strings would
// not fit the heap): each row of each job once, no line of anything else.
let errors = 0;
let delivered = 0;
let duplicates = 0;
let strangers = 0;
let lost = 0;
for (const [jobId, n] of ledger) {
  const rowsSeen = new RowSet();
  for (const part of (await readJobIndex(store, '', jobId)).parts) {
    for (const [kind, file] of [
      ['result', part.results],
      ['error', part.errors],
    ] as const) {
      if (!file) continue;
      const text = (await store.get(file.name))?.toString() ?? '';
      for (const l of text.split('\n')) {
        if (!l) continue;
        const { id } = JSON.parse(l) as { id: string };
        const row = Number(id.slice(id.lastIndexOf(':') + 1));
        if (!id.startsWith(`${jobId}:`) || !(row >= 0 && row < n)) strangers++;
        else if (!rowsSeen.add(row)) duplicates++;
        else {
          delivered++;
          if (kind === 'error') errors++;
        }
      }
    }
  }
  lost += n - rowsSeen.countBelow(n);
}
const announcementsPerJob = Object.fromEntries(
  [...ledger.keys()].map((j) => [j, announced.filter((a) => a === j).length]),
);
const verdict = {
  delivered,
  lost,
  duplicates,
  announcementsPerJob,
  ok:
    lost === 0 &&
    duplicates === 0 &&
    strangers === 0 &&
    Object.values(announcementsPerJob).every((k) => k === 1) &&
    announced.length === ledger.size,
};
await sub.close();
await sub.delete().catch(() => undefined);
await t.delete().catch(() => undefined);
await pubsub.close();
await sim.close();
await gcs.close();

const wallS = (endAt - started) / 1_000;
const result = {
  benchmark: 'e2e',
  date: new Date().toISOString(),
  node: process.version,
  processes: args.processes === 'one' ? 'one (sluice dev)' : 'one per role',
  latency: args.latency,
  dispatchers,
  lanes: lanes === 2 ? ['openai', 'gemini'] : ['openai'],
  prompts,
  jobs,
  tenants: tenants.length,
  uploadMegabytes: Number((stats.bytes / 1024 / 1024).toFixed(1)),
  promptBytes: {
    median: quantile(stats.promptBytes, 0.5),
    p99: quantile(stats.promptBytes, 0.99),
    largest: stats.largestPromptBytes,
  },
  seconds: Number(wallS.toFixed(1)),
  promptsPerSecond: Math.round(prompts / wallS),
  uploadSeconds: seconds(uploadedAt),
  uploadMegabytesPerSecond: Number((stats.bytes / 1024 / 1024 / ((uploadedAt - started) / 1_000)).toFixed(1)),
  firstResultSeconds: firstResultAt === undefined ? null : seconds(firstResultAt),
  calls,
  cpuSeconds: Object.fromEntries(parts.map((r) => [r, Number(cpu[r]!.toFixed(1))])),
  cpuMsPerPrompt: Object.fromEntries(parts.map((r) => [r, Number(((cpu[r]! * 1_000) / prompts).toFixed(3))])),
  totalCpuMsPerPrompt: Number(((totalCpu * 1_000) / prompts).toFixed(3)),
  // Per role only where each role is its own process.
  dispatcherCpuMsPerCall: perRole ? Number(((dispatcherCpu * 1_000) / Math.max(1, calls)).toFixed(3)) : null,
  sinkRecordsPerCpuSecond: perRole ? Math.round(prompts / Math.max(0.01, cpu['sink']!)) : null,
  ingestMegabytesPerCpuSecond: perRole
    ? Number((stats.bytes / 1024 / 1024 / Math.max(0.01, cpu['ingest']!)).toFixed(1))
    : null,
  gcsRequests: gcsRun,
  gcsRequestsPer1000Prompts: Number(((gcsRun.total * 1_000) / prompts).toFixed(2)),
  resultsListing: listings,
  peakRssMb: Object.fromEntries(parts.map((r) => [r, Math.round(pipeline.peakRssMb(r))])),
  ceilings,
  ratios: ceilings && {
    promptsPerSecondToFetch: Number((prompts / wallS / ceilings.fetch.perSecond).toFixed(3)),
    promptsPerSecondToKafkaProduce: Number((prompts / wallS / ceilings.kafkaProduce.perSecond).toFixed(3)),
    uploadToKafkaProduceMegabytes: Number(
      (stats.bytes / 1024 / 1024 / ((uploadedAt - started) / 1_000) / ceilings.kafkaProduce.megabytesPerSecond).toFixed(
        3,
      ),
    ),
  },
  delivered: verdict.delivered,
  errorLines: errors,
  lost: verdict.lost,
  duplicates: verdict.duplicates,
  strangers,
  memoryCurve: curve,
  /** Median RSS over the last tenth written less the median over the first, per role (MB). */
  memoryGrowthMb:
    curve.length >= 2
      ? Object.fromEntries(parts.map((r) => [r, curve.at(-1)!.medianRssMb[r]! - curve[0]!.medianRssMb[r]!]))
      : null,
  announcementsPerJob: Object.values(verdict.announcementsPerJob),
  ok: verdict.ok && error === null,
  error,
};
log(
  `\n${prompts} prompts (${result.uploadMegabytes} MB, median ${result.promptBytes.median} B, p99 ${result.promptBytes.p99} B, ` +
    `largest ${result.promptBytes.largest} B) in ${result.seconds} s: ${result.promptsPerSecond} prompts/s end to end\n` +
    `  upload ${result.uploadSeconds} s (${result.uploadMegabytesPerSecond} MB/s); first result ${result.firstResultSeconds} s after the first byte\n` +
    `  CPU s: ${parts.map((r) => `${r} ${result.cpuSeconds[r]}`).join(', ')} (${result.totalCpuMsPerPrompt} ms a prompt in all)` +
    (perRole
      ? `; dispatcher ${result.dispatcherCpuMsPerCall} ms per call (${calls} calls); ` +
        `sink ${result.sinkRecordsPerCpuSecond} records per CPU s; ingest ${result.ingestMegabytesPerCpuSecond} MB per CPU s\n`
      : ` (${calls} calls)\n`) +
    `  GCS requests ${gcsRun.total} (${gcsRun.writes} writes, ${gcsRun.reads} reads, ${gcsRun.lists} lists, ${gcsRun.deletes} deletes): ${result.gcsRequestsPer1000Prompts} per 1,000 prompts; ` +
    `GET /results per job: ${listings.map((l) => `${l.files} files, ${l.gcsRequests} GCS requests, ${l.ms} ms`).join('; ')}\n` +
    `  peak RSS MB: ${Object.entries(result.peakRssMb)
      .map(([r, mb]) => `${r} ${mb}`)
      .join(', ')}\n` +
    (result.ratios
      ? `  against the ceilings: prompts/s ${result.ratios.promptsPerSecondToFetch} of plain fetch's calls/s, ` +
        `${result.ratios.promptsPerSecondToKafkaProduce} of kafkajs's records/s; upload MB/s ${result.ratios.uploadToKafkaProduceMegabytes} of kafkajs's\n`
      : '') +
    (result.memoryGrowthMb
      ? `  median RSS over the last tenth (to ${curve.at(-1)!.written} written) less over the first (to ${curve[0]!.written}): ${Object.entries(
          result.memoryGrowthMb,
        )
          .map(([r, mb]) => `${r} ${mb} MB`)
          .join(', ')}\n`
      : '') +
    `  delivered ${verdict.delivered} (${errors} as errors), lost ${verdict.lost}, duplicates ${verdict.duplicates}, announcements per job ${result.announcementsPerJob.join('/')}` +
    (error ? `\n  ${error}` : ''),
);
mkdirSync(dirname(jsonFile), { recursive: true });
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`);
log(`written ${jsonFile}`);
process.exit(result.ok ? 0 : 1);
