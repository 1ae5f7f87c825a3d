import type { Logger } from '@sluice/kafka';
import {
  indexTag,
  ObjectExistsError,
  rollupName,
  type IndexRollup,
  type JobIndex,
  type ObjectStore,
  type PartSummary,
  type RowSet,
} from '@sluice/object-store';

export interface IndexRollerOptions {
  store: ObjectStore;
  prefix: string;
  jobId: string;
  /** A roll-up is written once this many parts are committed past the last one. */
  every: number;
  log: Logger;
  /** The writer's committed parts and rows, read at the moment a roll-up is taken. */
  snapshot: () => { parts: readonly PartSummary[]; rows: RowSet };
}

/**
 * Writes a job's index roll-ups (see IndexRollup): every `every` committed parts, the writer's
 * committed parts and rows in one object, so that reading a job's index costs a roll-up and the
 * few indexes after it. One write at a time, never in a part's way; a failed or lost one only
 * leaves readers more indexes to read. The roll-up two behind is deleted.
 */
export class IndexRoller {
  private seq = 0;
  private since = 0;
  private writing: Promise<void> | undefined;

  constructor(private readonly o: IndexRollerOptions) {}

  /** Where the writer found the job at start: the newest roll-up and the parts past it. */
  started(index: JobIndex): void {
    this.seq = index.rollupSeq;
    this.since = index.parts.length - index.covered.size;
    this.maybeRoll();
  }

  /** A part was committed. */
  committed(): void {
    this.since++;
    this.maybeRoll();
  }

  /** Waits for a roll-up being written. */
  async idle(): Promise<void> {
    await this.writing;
  }

  private maybeRoll(): void {
    if (this.since < this.o.every || this.writing) return;
    const { parts, rows } = this.o.snapshot();
    const rollup: IndexRollup = {
      version: 1,
      covers: parts.map((p) => indexTag(p.partition, p.start)),
      parts: [...parts],
      rows: rows.toBuffer().toString('base64'),
    };
    const body = JSON.stringify(rollup);
    const seq = this.seq + 1;
    const covered = this.since;
    this.since = 0;
    this.writing = this.write(seq, body, covered).finally(() => (this.writing = undefined));
  }

  private async write(seq: number, body: string, covered: number): Promise<void> {
    const { store, prefix, jobId, log } = this.o;
    try {
      await store.put(rollupName(prefix, jobId, seq), body, { ifAbsent: true, contentType: 'application/json' });
      this.seq = seq;
      if (seq > 2) await store.delete(rollupName(prefix, jobId, seq - 2));
    } catch (err) {
      // Another writer of the job took this number: ours is no truer, the next takes the one after.
      if (err instanceof ObjectExistsError) this.seq = seq;
      else {
        log.warn({ err, jobId, seq }, 'index roll-up not written; readers read the indexes instead');
        this.since += covered;
      }
    }
  }
}
