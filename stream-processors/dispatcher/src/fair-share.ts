interface PartitionState {
  inFlight: number;
  weight: number;
  waiting: boolean;
}

/**
 * Shares a process's call slots among the lane partitions that have work, in proportion to their
 * weight (1 + the priority of their prompts). Jobs sit on partitions of their own (placement), so
 * a small job's partition gets its share of the slots while a backfill fills the rest, instead of
 * waiting behind it.
 */
export class FairShare {
  private readonly parts = new Map<number, PartitionState>();
  private total = 0;

  constructor(private capacity: number) {}

  get inFlight(): number {
    return this.total;
  }

  /** The slots shared now. */
  get slots(): number {
    return this.capacity;
  }

  /** Changes the slots shared (calls in flight beyond a smaller capacity finish as they are). */
  resize(capacity: number): void {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  private state(p: number): PartitionState {
    let s = this.parts.get(p);
    if (!s) {
      s = { inFlight: 0, weight: 1, waiting: false };
      this.parts.set(p, s);
    }
    return s;
  }

  /** The slots partition `p` may use while the partitions with work share the capacity. */
  share(p: number): number {
    let sum = 0;
    for (const [q, s] of this.parts) if (q === p || s.inFlight > 0 || s.waiting) sum += s.weight;
    const w = this.state(p).weight;
    return Math.max(1, Math.floor((this.capacity * w) / Math.max(w, sum)));
  }

  /**
   * Whether partition `p` (whose next prompt has `weight`) may start a call now. When it may not,
   * the partition counts as waiting: its share is kept free for it as other calls finish.
   */
  admit(p: number, weight: number): boolean {
    const s = this.state(p);
    // A weight that is not a positive number (a record's priority undefined or NaN) counts as 1:
    // one NaN made every partition's share NaN, and the whole lane stopped.
    s.weight = Number.isFinite(weight) && weight > 0 ? weight : 1;
    const ok = this.total < this.capacity && s.inFlight < this.share(p);
    s.waiting = !ok;
    if (ok) {
      s.inFlight++;
      this.total++;
    }
    return ok;
  }

  finished(p: number): void {
    const s = this.state(p);
    s.inFlight = Math.max(0, s.inFlight - 1);
    this.total = Math.max(0, this.total - 1);
    if (s.inFlight === 0 && !s.waiting) this.parts.delete(p);
  }

  /** Waiting partitions that would now be admitted: resume them. */
  resumable(): number[] {
    const out: number[] = [];
    for (const [p, s] of this.parts) {
      if (s.waiting && this.total < this.capacity && s.inFlight < this.share(p)) {
        s.waiting = false;
        out.push(p);
      }
    }
    return out;
  }

  /** After a rebalance no partition is paused: none waits. */
  forgetWaiting(): void {
    for (const s of this.parts.values()) s.waiting = false;
  }
}
