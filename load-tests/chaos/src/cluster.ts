import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/testing';

export type Role = 'ingest' | 'dispatcher' | 'delay' | 'sink';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const entry: Record<Role, string> = {
  ingest: 'ingest-api/src/main.ts',
  dispatcher: 'stream-processors/dispatcher/src/main.ts',
  delay: 'stream-processors/delay/src/main.ts',
  sink: 'stream-processors/sink/src/main.ts',
};

/** Resident set size of a process in MB, from /proc; 0 once it is gone. */
function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
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

  constructor(
    private readonly env: Record<string, string>,
    private readonly ingestUrl: string,
    private readonly log: (line: string) => void,
  ) {
    this.sampler = setInterval(() => {
      for (const [role, p] of this.procs)
        if (p.pid) this.peakRssMb[role] = Math.max(this.peakRssMb[role], rssMb(p.pid));
    }, 250);
  }

  /** Starts another replica of a role; stop it with SIGTERM (a replica leaving) or SIGKILL. */
  startReplica(role: Role): ChildProcess {
    const child = this.spawn(role, {});
    this.extras.add(child);
    child.once('exit', () => this.extras.delete(child));
    return child;
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
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, entry[role])], {
      cwd: root,
      env: { ...process.env, ...this.env, ...extra },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Each role's JSON log, for reading after a failed scenario.
    mkdirSync(join(root, '.sluice', 'logs'), { recursive: true });
    const out = createWriteStream(join(root, '.sluice', 'logs', `chaos-${role}.log`), { flags: 'a' });
    child.stdout?.pipe(out);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-2_000);
    });
    child.once('exit', (code, signal) => {
      if (!this.stopped && signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0) {
        this.log(`  ${role} exited (${code ?? signal}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
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
