/**
 * Named places where the fault suite (load-tests/chaos) kills a process to prove that nothing is
 * lost or duplicated there. Off unless SLUICE_CRASH_POINT names one ("name" or "name:N" for the
 * Nth time it is reached); each process's config module reads that variable.
 */
export const crashPointNames = [
  /** The provider answered; the outcome is not produced yet. */
  'dispatcher.after-call',
  /** The outcome (or the delayed record) is produced; the lane offset is not committed yet. */
  'dispatcher.after-produce',
  /** A due record is back on its lane; the delay topic offset is not committed yet. */
  'delay.after-produce',
  /** A part's files are written; its index (the commit) is not. */
  'sink.after-write',
  /** A job is announced; neither the note that it was nor its finalized event is written yet. */
  'sink.after-announce',
] as const;

export type CrashPointName = (typeof crashPointNames)[number];

export class CrashPoint {
  private hits = 0;

  private constructor(
    readonly name: CrashPointName,
    readonly after: number,
  ) {}

  /** Parses SLUICE_CRASH_POINT; undefined when unset. Throws a clear error for a bad value. */
  static parse(spec: string | undefined): CrashPoint | undefined {
    if (!spec) return undefined;
    const [name, n] = spec.split(':');
    const after = n === undefined ? 1 : Number(n);
    if (!(crashPointNames as readonly string[]).includes(name ?? '') || !Number.isInteger(after) || after < 1) {
      throw new Error(`SLUICE_CRASH_POINT=${spec}: give one of ${crashPointNames.join(', ')}, optionally :N (N ≥ 1)`);
    }
    return new CrashPoint(name as CrashPointName, after);
  }

  /** Kills this process with SIGKILL (no cleanup, as a crash) the Nth time `name` is reached. */
  reached(name: CrashPointName): void {
    if (name !== this.name || ++this.hits < this.after) return;
    process.kill(process.pid, 'SIGKILL');
  }
}
