/**
 * Tracks the records of one partition that are in flight, so that offsets are committed only up
 * to the highest contiguous finished offset: with many calls per partition running at once, a
 * record that finishes early must not let the commit pass one still running (a crash would lose it).
 */
export class OffsetTracker {
  /** Offsets started and not finished, in start order (which is offset order within a partition). */
  private readonly pending: number[] = [];
  private readonly finished = new Set<number>();
  private committable: number | undefined;
  private lastStarted: number | undefined;

  /** Number of records started and not yet finished. */
  get inFlight(): number {
    return this.pending.length - this.finished.size;
  }

  start(offset: number): void {
    const last = this.lastStarted;
    if (last !== undefined && offset <= last) {
      throw new Error(`offset ${offset} started after ${last}: a partition's records start in order`);
    }
    this.lastStarted = offset;
    this.pending.push(offset);
  }

  /**
   * A transaction marker (or another control record) at `offset`: nothing to process, but the
   * commit may pass it once every record before it is done, so that an idle partition's
   * committed offset reaches the log's end (lag 0, not 1 forever). Returns what finish() does;
   * a marker at or before the last record started is already behind the commit.
   */
  skip(offset: number): number | undefined {
    if (this.lastStarted !== undefined && offset <= this.lastStarted) return undefined;
    this.start(offset);
    return this.finish(offset);
  }

  /**
   * Marks `offset` done. Returns the offset to commit (the next one to read, as Kafka wants it)
   * when the contiguous finished prefix grew, else undefined.
   */
  finish(offset: number): number | undefined {
    if (!this.pending.includes(offset)) throw new Error(`offset ${offset} was not started or is already committed`);
    this.finished.add(offset);
    let advanced = false;
    while (this.pending.length > 0 && this.finished.has(this.pending[0]!)) {
      const head = this.pending.shift()!;
      this.finished.delete(head);
      this.committable = head + 1;
      advanced = true;
    }
    return advanced ? this.committable : undefined;
  }

  /** The offset to commit now: one past the highest contiguous finished record. */
  get commitOffset(): number | undefined {
    return this.committable;
  }
}
