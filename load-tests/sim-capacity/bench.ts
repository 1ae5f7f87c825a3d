/**
 * Capacity of the provider simulator: requests per second it serves on loopback, so that no
 * benchmark of Sluice is ever bounded by the simulator. The simulator runs in its own process;
 * autocannon drives it from this one.
 *
 *   npm run bench:sim -- [--duration 10] [--rounds 3] [--connections 64] [--json FILE]
 *
 * Each scenario runs --rounds times, the scenarios in turn (A B A B ...), and the median round is
 * reported: the machine is shared and noisy, so single runs mislead.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { helpIfAsked } from '@sluice/testing';

const here = dirname(fileURLToPath(import.meta.url));
helpIfAsked(import.meta.url);
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '64' },
    json: { type: 'string', default: resolve(here, '../results/provider-sim-capacity.json') },
  },
});

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

interface Scenario {
  name: string;
  key: string;
  keyConfig: unknown;
}

const scenarios: Scenario[] = [
  { name: 'openai, limits off', key: 'bench-open', keyConfig: { dialect: 'openai', limits: {} } },
  // Limits far above the offered load: every request runs the RPM and TPM buckets and is admitted.
  {
    name: 'openai, RPM+TPM buckets',
    key: 'bench-limited',
    keyConfig: { dialect: 'openai', limits: { rpm: 1e9, tpm: 1e12 } },
  },
];

async function startSim(port: number): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(here, '../../libs/provider-sim/src/cli.ts'),
      '--port',
      String(port),
      '--latency-ms',
      '0',
      '--per-token-ms',
      '0',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((ok, fail) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('provider simulator on') && ok());
    child.once('exit', (code) => fail(new Error(`simulator exited with ${code}`)));
  });
  return {
    pid: child.pid!,
    stop: () => new Promise((done) => (child.once('exit', () => done()), child.kill('SIGTERM'))),
  };
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function main(): Promise<void> {
  const port = await freePort();
  const sim = await startSim(port);
  const url = `http://127.0.0.1:${port}`;
  const rounds: Array<Record<string, number | string>> = [];
  let peakRss = 0;
  try {
    for (let round = 1; round <= Number(values.rounds); round++) {
      for (const s of scenarios) {
        await fetch(`${url}/_sim/keys/${s.key}`, { method: 'PUT', body: JSON.stringify(s.keyConfig) });
        await fetch(`${url}/_sim/reset`, { method: 'POST' });
        const cpuBefore = cpuSeconds(sim.pid);
        const run = await autocannon({
          url: `${url}/v1/chat/completions`,
          method: 'POST',
          connections: Number(values.connections),
          duration: Number(values.duration),
          headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: 'Classify: markets rallied.' }],
            max_tokens: 16,
          }),
        });
        const simCpu = cpuSeconds(sim.pid) - cpuBefore;
        const stats = (await (await fetch(`${url}/_sim/stats?bucketMs=60000`)).json()) as { ledgerRows: number };
        const row = {
          scenario: s.name,
          round,
          requestsPerSecond: Math.round(run.requests.average),
          latencyP50Ms: run.latency.p50,
          latencyP99Ms: run.latency.p99,
          total: run.requests.total,
          non2xx: run.non2xx,
          errors: run.errors,
          ledgerRows: stats.ledgerRows,
          // Share of one core the simulator used: near 100 % means it, not the client, was the limit.
          simCpuPercentOfOneCore: Math.round((simCpu / Number(values.duration)) * 100),
        };
        rounds.push(row);
        console.log(
          `round ${round}  ${s.name.padEnd(26)} ${String(row.requestsPerSecond).padStart(7)} req/s  ` +
            `p50 ${row.latencyP50Ms} ms  p99 ${row.latencyP99Ms} ms  non-2xx ${row.non2xx}  errors ${row.errors}  ` +
            `ledger ${row.ledgerRows}  sim CPU ${row.simCpuPercentOfOneCore} % of a core`,
        );
      }
    }
  } finally {
    peakRss = peakRssMb(sim.pid);
    await sim.stop();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const results = scenarios.map((s) => {
    const mine = rounds.filter((r) => r.scenario === s.name);
    return {
      scenario: s.name,
      medianRequestsPerSecond: median(mine.map((r) => Number(r.requestsPerSecond))),
      minRequestsPerSecond: Math.min(...mine.map((r) => Number(r.requestsPerSecond))),
      maxRequestsPerSecond: Math.max(...mine.map((r) => Number(r.requestsPerSecond))),
      medianLatencyP99Ms: median(mine.map((r) => Number(r.latencyP99Ms))),
      errors: mine.reduce((n, r) => n + Number(r.errors) + Number(r.non2xx), 0),
    };
  });
  const simPeakRssMb = peakRss;
  console.log('\nscenario                    median req/s   (min–max)        p99 ms  errors');
  for (const r of results) {
    console.log(
      `${r.scenario.padEnd(26)} ${String(r.medianRequestsPerSecond).padStart(12)}   (${r.minRequestsPerSecond}–${r.maxRequestsPerSecond})  ${String(r.medianLatencyP99Ms).padStart(6)}  ${r.errors}`,
    );
  }
  console.log(`simulator peak RSS ${simPeakRssMb} MB`);
  const report = {
    benchmark: 'provider-sim-capacity',
    date: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    connections: Number(values.connections),
    durationSeconds: Number(values.duration),
    simPeakRssMb,
    results,
    rounds,
  };
  mkdirSync(dirname(values.json), { recursive: true });
  writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`written ${values.json}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
