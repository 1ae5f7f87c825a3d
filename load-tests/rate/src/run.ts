/**
 * npm run bench:rate -- [--quick] [--only a,b] [--json FILE] [--cookbook FILE] [--serial]
 *
 * --only names workloads to run; an optional one (gemini-long) runs only when named.
 * Rate control side by side: for each workload, every contender at once (--serial: in turn), each
 * on a fresh simulator key with the same limits, schedule, seed and prompt stream. Every figure comes from the simulator's
 * ledger. Writes JSON, prints a markdown table, and draws a PNG per workload.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createKafka } from '@sluice/kafka';
import { startProviderSim, type KeyConfig } from '@sluice/provider-sim';
import { createSchemaCodecs } from '@sluice/schemas';
import { chart } from './chart.js';
import {
  cpuSeconds,
  localStack,
  launchCookbook,
  launchNaive,
  launchSluice,
  startTlsFront,
  type BenchPrompt,
  type Launch,
  type LaunchContext,
} from './contenders.js';
import { figures, round, type Figures, type Phase } from './figures.js';
import { matrix, workloads, type Workload } from './workloads.js';
import { helpIfAsked } from '@sluice/testing';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
helpIfAsked(import.meta.url);
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string', default: join(root, 'load-tests/results/rate.json') },
    charts: { type: 'string', default: join(root, 'load-tests/results/rate') },
    cookbook: { type: 'string', default: process.env['SLUICE_COOKBOOK_SCRIPT'] },
    // One contender after another instead of all at once (each on its own key either way).
    serial: { type: 'boolean', default: false },
    // Every accounting × scenario × header style (--quick: a subset in about 4 minutes).
    matrix: { type: 'boolean', default: false },
  },
});

const { settings: s, env: stackEnv } = localStack(root);

type ContenderName = 'sluice' | 'cookbook' | 'naive';
interface Result {
  workload: string;
  contender: ContenderName;
  figures: Omit<Figures, 'series'>;
  cpuSecondsPer1000: number | null;
  series: number[];
}

/** The same prompt stream for every contender: seeded lengths and words. */
function promptStream(w: Workload, n: number, model: string): BenchPrompt[] {
  let x = 0x9e3779b9;
  const rand = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  const words = ['river', 'signal', 'market', 'quiet', 'engine', 'harbor', 'ledger', 'window', 'summit', 'orbit'];
  return Array.from({ length: n }, (_, i) => {
    const target = w.prompt.chars[0] + Math.floor(rand() * (w.prompt.chars[1] - w.prompt.chars[0]));
    let text = `Summarize item ${i}:`;
    while (text.length < target) text += ` ${words[Math.floor(rand() * words.length)]}`;
    return { model, messages: [{ role: 'user', content: text.slice(0, target) }], max_tokens: w.prompt.maxTokens };
  });
}

const sim = await startProviderSim({
  config: { seed: 7, latency: { baseMs: 80, perTokenMs: 0.5, sigma: 0.25 }, keys: {} },
});
const tls = args.cookbook ? await startTlsFront(sim.url) : undefined;
const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: 'bench-rate' });
const codecs = await createSchemaCodecs({ registryUrl: s.schemaRegistryUrl });
const contenders: ContenderName[] = ['sluice', ...(args.cookbook ? (['cookbook'] as const) : []), 'naive'];
const only = args.only?.split(',');
const chosen = (args.matrix ? matrix(args.quick) : workloads(args.quick)).filter((w) =>
  only ? only.includes(w.name) : !w.optional,
);
if (args.matrix) {
  if (!process.argv.some((a) => a.startsWith('--json'))) args.json = join(root, 'load-tests/results/rate-matrix.json');
  if (!process.argv.some((a) => a.startsWith('--charts'))) args.charts = join(root, 'load-tests/results/rate-matrix');
}
const results: Result[] = [];
const startedAt = Date.now();
console.log(
  `bench:rate: ${chosen.length} workloads × ${contenders.join(', ')}; simulator at ${sim.url}` +
    (args.cookbook ? '' : ' (cookbook peer not run: give its script with --cookbook FILE)'),
);

async function runOne(w: Workload, contender: ContenderName): Promise<Result> {
  const id = randomBytes(4).toString('hex');
  const apiKey = `sk-bench-${w.name}-${contender}-${id}`;
  const model = w.dialect === 'gemini' ? 'gemini-2.0-flash' : 'gpt-4o-mini';
  const first = w.phases[0]!;
  const external = w.externalShare ?? 0;
  const outage = w.name === 'faults' ? { startMs: sim.sim.elapsed() + 15_000, durationMs: 10_000 } : undefined;
  const key: KeyConfig = {
    dialect: w.dialect,
    limits: { rpm: first.rpm, tpm: first.tpm, burstWindowMs: w.burstWindowMs ?? 1_000, accounting: w.accounting },
    rateHeaders: w.rateHeaders,
    externalShare: external || undefined,
    faults: { ...w.faults, outages: outage ? [outage] : [] },
    maxInFlight: w.dialect === 'compatible' ? 1_000 : undefined,
  };
  sim.sim.setKey(apiKey, key);
  // Enough prompts that no contender runs dry: the binding limit's rate for the whole run, × 2.
  const perSecond = Math.max(...w.phases.map((p) => (w.dim === 'rpm' ? p.rpm / 60 : p.tpm / 60 / 250)));
  const prompts = promptStream(w, Math.ceil(perSecond * (w.durationMs / 1_000) * 2), model);
  const workdir = join(root, '.sluice', 'bench-rate', `${w.name}-${contender}-${id}`);
  mkdirSync(workdir, { recursive: true });
  const ctx: LaunchContext = {
    root,
    simUrl: sim.url,
    apiKey,
    dialect: w.dialect,
    prompts,
    told: { rpm: first.rpm, tpm: first.tpm },
    replicas: contender === 'sluice' ? (w.replicas ?? 1) : 1,
    workdir,
  };
  const launch: Launch =
    contender === 'sluice'
      ? await launchSluice(ctx, { kafka, codecs, stackEnv, id })
      : contender === 'cookbook'
        ? launchCookbook(ctx, resolve(args.cookbook!), tls!)
        : launchNaive(ctx);
  try {
    return await measure(w, contender, launch, { apiKey, external, outage, first });
  } catch (err) {
    await launch.stop(); // a row that fails leaves no contender running
    throw err;
  }
}

async function measure(
  w: Workload,
  contender: ContenderName,
  launch: Launch,
  c: {
    apiKey: string;
    external: number;
    outage?: { startMs: number; durationMs: number };
    first: Workload['phases'][number];
  },
): Promise<Result> {
  const { apiKey, external, outage, first } = c;
  const stderr: string[] = [];
  for (const p of launch.procs) p.stderr?.on('data', (c: Buffer) => stderr.push(c.toString()));
  // The clock starts at the contender's first request.
  const rowsOf = () => sim.sim.ledger.since(0).filter((r) => r.key === apiKey);
  let t0: number | undefined;
  const deadline = Date.now() + 60_000;
  while (t0 === undefined) {
    const row = rowsOf()[0];
    if (row) t0 = row.t;
    else if (Date.now() > deadline || launch.procs.every((p) => p.exitCode !== null))
      throw new Error(`${contender} sent no request in 60 s: ${stderr.join('').slice(-500)}`);
    else await new Promise((r) => setTimeout(r, 20));
  }
  const cpuAtStart = launch.procs.map((p) => cpuSeconds(p.pid!) ?? 0);
  const cpuLast = [...cpuAtStart];
  const sampler = setInterval(() => {
    launch.procs.forEach((p, i) => {
      const c = cpuSeconds(p.pid!);
      if (c !== undefined) cpuLast[i] = c;
    });
  }, 200);
  for (const change of w.phases.slice(1)) {
    const at = t0 + change.atMs - sim.sim.elapsed();
    await new Promise((r) => setTimeout(r, Math.max(0, at)));
    sim.sim.setLimits(apiKey, { rpm: change.rpm, tpm: change.tpm });
  }
  await new Promise((r) => setTimeout(r, Math.max(0, t0 + w.durationMs - sim.sim.elapsed())));
  clearInterval(sampler);
  await launch.stop();
  const rows = rowsOf();
  // BENCH_LEDGER_DIR=DIR keeps each run's ledger rows (JSON lines, times from its first request).
  if (process.env['BENCH_LEDGER_DIR']) {
    mkdirSync(process.env['BENCH_LEDGER_DIR'], { recursive: true });
    writeFileSync(
      join(process.env['BENCH_LEDGER_DIR'], `${w.name.replaceAll('/', '_')}-${contender}.jsonl`),
      rows.map((r) => JSON.stringify({ ...r, t: r.t - t0! })).join('\n'),
    );
  }
  // Phases: each limit schedule step; for the faults workload, before and after the outage.
  const limitOf = (p: Workload['phases'][number]) => (w.dim === 'rpm' ? p.rpm : p.tpm) * (1 - external);
  let phases: Phase[] = w.phases.map((p, i) => ({
    fromMs: p.atMs,
    toMs: w.phases[i + 1]?.atMs ?? w.durationMs,
    limit: limitOf(p),
  }));
  if (outage) {
    const from = outage.startMs - t0;
    const to = from + outage.durationMs;
    phases = [
      { fromMs: 0, toMs: from, limit: limitOf(first) },
      { fromMs: to, toMs: w.durationMs, limit: limitOf(first) },
    ];
  }
  // A phase settles in 2 s, or once a bucket holding more is spent: what it held at the start
  // was saved before the run, not admitted at the limit's rate.
  const f = figures(rows, {
    dim: w.dim,
    t0,
    phases,
    settleMs: Math.max(2_000, w.burstWindowMs ?? 0),
    fixedWindowMs: w.accounting === 'fixed' ? (w.burstWindowMs ?? 1_000) : undefined,
  });
  const cpu = cpuLast.reduce((a, b, i) => a + b - cpuAtStart[i]!, 0);
  const answered = f.admitted || 1;
  const { series, ...rest } = f;
  return {
    workload: w.name,
    contender,
    figures: rest,
    cpuSecondsPer1000: round((cpu / answered) * 1_000, 2),
    series,
  };
}

try {
  for (const w of chosen) {
    // Each workload's rows are read from the ledger as it runs: the rows of the ones before are
    // not needed, and over a long run (the matrix) they grow to millions and starve the simulator.
    sim.sim.ledger.clear();
    console.log(`\n${w.name}: ${w.what}`);
    const runs = contenders.filter((c) => c !== 'cookbook' || w.dialect !== 'gemini');
    if (runs.length < contenders.length) console.log('  cookbook not run: it speaks the OpenAI API only');
    // Side by side: the contenders run at once, each on its own key, so that they share the
    // machine's noise; --serial runs them one after another.
    const mine: Result[] = [];
    if (args.serial) for (const c of runs) mine.push(await runOne(w, c));
    else {
      // Every contender settles (each stops its own processes) before a failure ends the run: a
      // failure of one left the others' dispatchers running after the bench had exited.
      const settled = await Promise.allSettled(runs.map((c) => runOne(w, c)));
      for (const s of settled) if (s.status === 'rejected') throw s.reason;
      mine.push(...settled.map((s) => (s as PromiseFulfilledResult<Result>).value));
    }
    for (const r of mine) {
      results.push(r);
      const ph = r.figures.phases
        .map((p) => `${p.utilization.toFixed(3)}${p.convergeS === null ? '' : ` (${p.convergeS} s)`}`)
        .join(' / ');
      console.log(
        `  ${r.contender.padEnd(8)} utilization ${ph}; 429s per 10k ${r.figures.rateLimitedPer10k}; ` +
          `${r.figures.requests} requests; CPU ${r.cpuSecondsPer1000} s per 1,000`,
      );
    }
    if (args.matrix) continue; // one summary chart at the end, not one per row
    mkdirSync(args.charts, { recursive: true });
    const limitSeries = (() => {
      const out: number[] = [];
      const ext = 1 - (w.externalShare ?? 0);
      for (let sec = 0; sec < w.durationMs / 1_000; sec++) {
        const p = [...w.phases].reverse().find((x) => x.atMs <= sec * 1_000)!;
        out.push(((w.dim === 'rpm' ? p.rpm : p.tpm) / 60) * ext);
      }
      return out;
    })();
    writeFileSync(
      join(args.charts, `${w.name}.png`),
      chart({
        title: `${w.name}: admitted ${w.dim === 'rpm' ? 'requests' : 'tokens'} per second`,
        limit: limitSeries,
        lines: mine.map((r) => ({ name: r.contender, points: r.series })),
      }),
    );
  }
} finally {
  await tls?.close();
  await sim.close();
}

const table = [
  '| workload | contender | utilization per phase (converged after, s) | 429s per 10k | requests | CPU s per 1,000 |',
  '| --- | --- | --- | ---: | ---: | ---: |',
  ...results.map(
    (r) =>
      `| ${r.workload} | ${r.contender} | ${r.figures.phases
        .map((p) => `${p.utilization.toFixed(3)} (${p.convergeS ?? '–'})`)
        .join(' / ')} | ${r.figures.rateLimitedPer10k} | ${r.figures.requests} | ${r.cpuSecondsPer1000} |`,
  ),
].join('\n');
console.log(`\n${table}\n\nbench:rate: ${round((Date.now() - startedAt) / 1_000, 1)} s; charts in ${args.charts}`);
const verdicts = args.matrix ? matrixVerdicts(results) : undefined;
if (verdicts) {
  console.log(
    [
      '',
      '| row | Sluice over the run | naive | cookbook | 429s per 10k | back above 0.9 after the change, s | goal |',
      '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
      ...verdicts.map(
        (v) =>
          `| ${v.row} | ${v.sluice.toFixed(3)} | ${v.naive?.toFixed(3) ?? '–'} | ${v.cookbook?.toFixed(3) ?? '–'} | ${v.per10k} | ${v.backS ?? '–'} | ${v.ok ? 'met' : `missed: ${v.why}`} |`,
      ),
      '',
      `matrix: ${verdicts.filter((v) => v.ok).length} of ${verdicts.length} rows meet the goal`,
    ].join('\n'),
  );
  mkdirSync(args.charts, { recursive: true });
  writeFileSync(
    join(args.charts, 'summary.png'),
    chart({
      title: 'rate matrix: admitted / sustainable, x 100, one point per row (goal line: 95)',
      limit: verdicts.map(() => 95),
      lines: [
        { name: 'sluice', points: verdicts.map((v) => v.sluice * 100) },
        { name: 'naive', points: verdicts.map((v) => (v.naive ?? 0) * 100) },
        ...(args.cookbook ? [{ name: 'cookbook', points: verdicts.map((v) => (v.cookbook ?? 0) * 100) }] : []),
      ],
    }),
  );
}
mkdirSync(dirname(args.json), { recursive: true });
writeFileSync(
  args.json,
  JSON.stringify(
    {
      at: new Date().toISOString(),
      quick: args.quick,
      serial: args.serial,
      cookbook: args.cookbook
        ? 'api_request_parallel_processor.py as given, tiktoken replaced by peer/tiktoken.py (ceil(chars / 4))'
        : 'not run: no script given (--cookbook FILE)',
      seconds: round((Date.now() - startedAt) / 1_000, 1),
      results: results.map(({ series, ...r }) => ({ ...r, seriesPerSecond: series })),
      ...(verdicts ? { verdicts } : {}),
    },
    null,
    2,
  ) + '\n',
);
process.exit(0);

/**
 * The matrix's goals per row (issue: rate control on any provider): with headers, at least 0.95
 * of the sustainable rate over the run and at most 10 429s per 10k calls; 429-only rows at least
 * 0.85; back above 0.9 within two windows of a change; never more than 0.05 behind the naive peer
 * (up to the sustainable rate: a peer above it took the other client's share). The cookbook
 * peer's figure stands beside them, where it ran; no goal is measured against it.
 */
function matrixVerdicts(rs: Result[]) {
  const over = (r: Result) => {
    const ps = r.figures.phases;
    const span = ps.reduce((a, p) => a + (p.toS - p.fromS), 0);
    return ps.reduce((a, p) => a + p.utilization * (p.toS - p.fromS), 0) / Math.max(1, span);
  };
  return rs
    .filter((r) => r.contender === 'sluice')
    .map((r) => {
      const naive = rs.find((n) => n.workload === r.workload && n.contender === 'naive');
      const cookbook = rs.find((n) => n.workload === r.workload && n.contender === 'cookbook');
      const headers = !r.workload.endsWith('/429-only');
      const windowS = r.workload.includes('-1s/') ? 1 : 10;
      const sluice = round(over(r), 3);
      const naiveU = naive ? round(over(naive), 3) : undefined;
      const backS = r.figures.phases.length > 1 ? r.figures.phases[1]!.convergeS : null;
      const why: string[] = [];
      if (sluice < (headers ? 0.95 : 0.85)) why.push(`below ${headers ? 0.95 : 0.85}`);
      if (headers && r.figures.rateLimitedPer10k > 10) why.push('over 10 429s per 10k');
      if (r.figures.phases.length > 1 && (backS === null || backS > 2 * windowS))
        why.push('slow back after the change');
      // Above 1 a peer takes the other client's share (it takes what room it finds): the peer is
      // compared up to the sustainable rate, not beyond.
      if (naiveU !== undefined && sluice < Math.min(1, naiveU) - 0.05) why.push('behind the naive peer');
      return {
        row: r.workload,
        sluice,
        naive: naiveU,
        cookbook: cookbook ? round(over(cookbook), 3) : undefined,
        cookbookPer10k: cookbook?.figures.rateLimitedPer10k,
        per10k: r.figures.rateLimitedPer10k,
        backS,
        ok: why.length === 0,
        why: why.join(', '),
      };
    });
}
