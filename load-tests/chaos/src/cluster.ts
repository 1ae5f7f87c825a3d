import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/testing';

export type Role = 'ingest' | 'dispatcher' | 'delay' | 'sink';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
/** Connection errors kafkajs logs by the hundred while the network is cut: not news in a digest. */
const noise =
  /Response Heartbeat|Connection error|Response without match|ECONNRESET|ECONNREFUSED|Connection timeout|Request timed out/;

/** Fields every line has, or too long for a digest. */
const digestSkips = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'stack']);

const logFile = (role: Role) => join(root, '.sluice', 'logs', `chaos-${role}.log`);

const entry: Record<Role, string> = {
  ingest: 'ingest-api/src/main.ts',
  dispatcher: 'stream-processors/dispatcher/src/main.ts',
  delay: 'stream-processors/delay/src/main.ts',
  sink: 'stream-processors/sink/src/main.ts',
};

/** Resident set size of a process in MB, from /proc; 0 once it is gone. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // clock ticks of 10 ms (USER_HZ)
  } catch {
    return 0;
  }
}

/**
 * Sluice's four roles as separate processes, as in production, so that any one can be killed with
 * SIGKILL and started again. Peak RSS is sampled per role across restarts.
 */
export class Cluster {
  private readonly procs = new Map<Role, ChildProcess>();
  /** Extra replicas (a rebalance storm's), stopped with the cluster. */
  private readonly extras = new Set<ChildProcess>();
  readonly peakRssMb: Record<Role, number> = { ingest: 0, dispatcher: 0, delay: 0, sink: 0 };
  readonly restarts: Record<Role, number> = { ingest: 0, dispatcher: 0, delay: 0, sink: 0 };
  private readonly sampler: NodeJS.Timeout;
  private stopped = false;
  /** Where each role's log stood when this cluster began: its digest reads from there. */
  private readonly logStart = new Map<Role, number>();

  constructor(
    private readonly env: Record<string, string>,
    private readonly ingestUrl: string,
    private readonly log: (line: string) => void,
  ) {
    this.sampler = setInterval(() => {
      for (const [role, p] of this.procs)
        if (p.pid) this.peakRssMb[role] = Math.max(this.peakRssMb[role], rssMb(p.pid));
    }, 250);
    for (const role of Object.keys(entry) as Role[]) {
      const f = logFile(role);
      this.logStart.set(role, existsSync(f) ? statSync(f).size : 0);
    }
  }

  /**
   * For a failed scenario: per role, what it logged at warn or above since this cluster began,
   * connection noise left out, as counts per message and the last few lines with their times.
   */
  digest(lastLines = 6): string {
    const out: string[] = [];
    for (const role of Object.keys(entry) as Role[]) {
      const f = logFile(role);
      if (!existsSync(f)) continue;
      const text = readFileSync(f)
        .subarray(this.logStart.get(role) ?? 0)
        .toString();
      const counts = new Map<string, number>();
      const last: string[] = [];
      let lines = 0;
      let lastAt = '';
      for (const l of text.split('\n')) {
        if (!l.startsWith('{')) continue;
        let e: Record<string, unknown>;
        try {
          e = JSON.parse(l) as Record<string, unknown>;
        } catch {
          continue;
        }
        lines++;
        lastAt = new Date(Number(e['time'])).toISOString().slice(11, 23);
        const msg = String(e['msg'] ?? '');
        if (Number(e['level']) < 40 || noise.test(msg)) continue;
        counts.set(msg.slice(0, 80), (counts.get(msg.slice(0, 80)) ?? 0) + 1);
        const rest = Object.fromEntries(Object.entries(e).filter(([k]) => !digestSkips.has(k)));
        last.push(`${lastAt} ${msg.slice(0, 160)} ${JSON.stringify(rest).slice(0, 300)}`);
        if (last.length > lastLines) last.shift();
      }
      out.push(`  ${role}: ${lines} log lines, the last at ${lastAt || '-'}`);
      for (const [m, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8)) out.push(`    ${n}× ${m}`);
      for (const l of last) out.push(`    | ${l}`);
    }
    return out.join('\n');
  }

  /** Starts another replica of a role; stop it with SIGTERM (a replica leaving) or SIGKILL. */
  startReplica(role: Role, extra: Record<string, string> = {}): ChildProcess {
    const child = this.spawn(role, extra);
    this.extras.add(child);
    this.replicaRoles.set(child, role);
    child.once('exit', () => {
      this.extras.delete(child);
      this.replicaRoles.delete(child);
    });
    return child;
  }

  private readonly replicaRoles = new Map<ChildProcess, Role>();

  /** CPU seconds of the role's process and of its running extra replicas (startReplica). */
  cpuSecondsWithReplicas(role: Role): number {
    let total = this.cpuSeconds(role);
    for (const [p, r] of this.replicaRoles) if (r === role && p.pid) total += cpuSeconds(p.pid);
    return total;
  }

  /** Starts a role; `extra` env applies to this start only (a crash point, for instance). */
  async start(role: Role, extra: Record<string, string> = {}): Promise<void> {
    const child = this.spawn(role, extra);
    this.procs.set(role, child);
    if (role === 'ingest') {
      await waitFor(
        'the ingest API',
        async () => ((await fetch(`${this.ingestUrl}/healthz`).catch(() => undefined))?.ok ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 200 },
      );
    }
  }

  private spawn(role: Role, extra: Record<string, string>): ChildProcess {
    // SLUICE_BENCH_PROFILE=role:DIR writes that role's CPU profile to DIR when it exits.
    const [profiled, profileDir] = (process.env['SLUICE_BENCH_PROFILE'] ?? '').split(':');
    const prof = profiled === role && profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
    const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(root, entry[role])], {
      cwd: root,
      env: { ...process.env, ...this.env, ...extra },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Each role's JSON log, for reading after a failed scenario.
    mkdirSync(join(root, '.sluice', 'logs'), { recursive: true });
    const out = createWriteStream(logFile(role), { flags: 'a' });
    child.stdout?.pipe(out);
    // Beside it, whatever the process wrote to stderr (an uncaught error's stack), kept whole.
    const err = createWriteStream(logFile(role).replace(/\.log$/, '.stderr'), { flags: 'a' });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      err.write(`${new Date().toISOString()} pid ${child.pid}: ${c.toString()}`);
      stderr = (stderr + c.toString()).slice(-2_000);
    });
    child.once('exit', (code, signal) => {
      if (!this.stopped && signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0) {
        this.log(`  ${role} exited (${code ?? signal}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
      } else if (!this.stopped && code === 0 && !this.extras.has(child)) {
        // Nobody asked it to stop (replicas leave with SIGTERM; the roles are killed with SIGKILL).
        this.log(`  ${role} exited (0) without being asked to stop`);
      }
    });
    return child;
  }

  /** SIGKILL: no shutdown hooks run, as in a crash or an OOM kill. */
  async kill(role: Role): Promise<void> {
    const p = this.procs.get(role);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async restart(role: Role, extra: Record<string, string> = {}): Promise<void> {
    await this.kill(role);
    this.restarts[role]++;
    await this.start(role, extra);
  }

  /** CPU seconds the role's current process has used since it started. */
  cpuSeconds(role: Role): number {
    const pid = this.procs.get(role)?.pid;
    return pid ? cpuSeconds(pid) : 0;
  }

  /** Resident set size of the role's current process now, in MB. */
  rssMb(role: Role): number {
    const pid = this.procs.get(role)?.pid;
    return pid ? rssMb(pid) : 0;
  }

  /** Whether the role's process is running (a crash point may have killed it). */
  alive(role: Role): boolean {
    const p = this.procs.get(role);
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sampler);
    await Promise.all(
      [...this.procs.values(), ...this.extras].map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }),
    );
  }
}
