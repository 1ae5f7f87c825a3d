/**
 * The pipeline bench:e2e measures, in one of its two forms: every role its own process as in
 * production (the fault suite's Cluster, plus a dispatcher per extra lane), or every role in one
 * process as `sluice dev` runs them (one-process.ts). Either way, CPU and RSS per process from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/testing';
import { Cluster, cpuSeconds, rssMb, type Role } from '../../chaos/src/cluster.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');

export interface Pipeline {
  /** What CPU and RSS are reported for: the roles, or the one process. */
  readonly parts: string[];
  cpuSeconds(part: string): number;
  rssMb(part: string): number;
  peakRssMb(part: string): number;
  stop(): Promise<void>;
}

/** A lane beyond the first, with its own dispatcher process (its env over the first's). */
export interface ExtraLane {
  name: string;
  env: Record<string, string>;
}

/** A sampler of each process's peak RSS, every 250 ms. */
class Peaks {
  readonly peak = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  constructor(pids: () => Array<[string, number | undefined]>) {
    this.timer = setInterval(() => {
      for (const [part, pid] of pids()) if (pid) this.peak.set(part, Math.max(this.peak.get(part) ?? 0, rssMb(pid)));
    }, 250);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/** Every role its own process; `dispatchers` replicas of the first lane's dispatcher, one of each extra lane's. */
export async function startRoles(
  env: Record<string, string>,
  api: string,
  log: (line: string) => void,
  dispatchers: number,
  extra: ExtraLane[],
): Promise<Pipeline> {
  const cluster = new Cluster(env, api, log);
  for (const role of ['sink', 'delay', 'dispatcher', 'ingest'] as const) await cluster.start(role);
  const replicas: ChildProcess[] = [];
  for (let i = 1; i < dispatchers; i++) replicas.push(cluster.startReplica('dispatcher'));
  const lanes = extra.map((l) => ({
    name: `dispatcher-${l.name}`,
    procs: [cluster.startReplica('dispatcher', l.env)],
  }));
  const roles: Role[] = ['ingest', 'dispatcher', 'delay', 'sink'];
  const peaks = new Peaks(() => lanes.map((l) => [l.name, l.procs[0]!.pid]));
  const laneCpu = (procs: ChildProcess[]) => procs.reduce((n, p) => n + (p.pid ? cpuSeconds(p.pid) : 0), 0);
  return {
    parts: [...roles.slice(0, 2), ...lanes.map((l) => l.name), ...roles.slice(2)],
    cpuSeconds(part) {
      const l = lanes.find((x) => x.name === part);
      if (l) return laneCpu(l.procs);
      const all = cluster.cpuSecondsWithReplicas(part as Role);
      // The extra lanes' dispatchers are replicas of the role too: counted apart.
      return part === 'dispatcher' ? all - lanes.reduce((n, x) => n + laneCpu(x.procs), 0) : all;
    },
    rssMb(part) {
      const l = lanes.find((x) => x.name === part);
      return l ? (l.procs[0]!.pid ? rssMb(l.procs[0]!.pid) : 0) : cluster.rssMb(part as Role);
    },
    peakRssMb(part) {
      return peaks.peak.get(part) ?? cluster.peakRssMb[part as Role] ?? 0;
    },
    async stop() {
      peaks.stop();
      await cluster.stop();
    },
  };
}

/** Every role in one process, as `sluice dev` runs them: a dispatcher per lane. */
export async function startOneProcess(
  env: Record<string, string>,
  api: string,
  lanes: Array<{ provider: string; adapter: string; apiKey: string; baseUrl: string }>,
): Promise<Pipeline> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'load-tests/e2e/src/one-process.ts')], {
    cwd: root,
    env: { ...process.env, ...env, E2E_LANES: JSON.stringify(lanes) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = false;
  child.once('exit', () => (exited = true));
  await waitFor(
    'sluice dev in one process',
    async () => {
      if (exited) throw new Error('the one-process pipeline exited at start');
      return (await fetch(`${api}/healthz`).catch(() => undefined))?.ok ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const peaks = new Peaks(() => [['sluice-dev', child.pid]]);
  return {
    parts: ['sluice-dev'],
    cpuSeconds: () => (child.pid ? cpuSeconds(child.pid) : 0),
    rssMb: () => (child.pid ? rssMb(child.pid) : 0),
    peakRssMb: () => peaks.peak.get('sluice-dev') ?? 0,
    async stop() {
      peaks.stop();
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(t);
    },
  };
}
