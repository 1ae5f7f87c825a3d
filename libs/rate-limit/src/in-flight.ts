/**
 * How many calls to keep in flight, from Little's law: calls in flight = rate × time in flight. At
 * the rate the limits allow and the 99th percentile of recent call latencies, with a margin, no
 * admitted call waits for a slot, and calls beyond that would only wait for the limiter (holding
 * their prompts in memory meanwhile).
 */
export class InFlightCap {
  private readonly latencies: number[] = [];
  private next = 0;

  constructor(
    private readonly o: {
      /** The most calls in flight, whatever the law says (memory, sockets). */
      max: number;
      /** The fewest, so that a slow start or a first call is not starved. @default 4 */
      min?: number;
      /** × rate × p99. @default 1.5 */
      margin?: number;
      /** Latencies kept. @default 512 */
      window?: number;
      /** p99 assumed before any call has ended. @default 1000 */
      initialP99Ms?: number;
      /**
       * Time a slot is held beyond the call itself: producing the outcome, and fetching the next
       * prompt into a freed slot (a paused partition is read again by the next fetch). Added to
       * the p99: with calls of a few milliseconds it is most of the time in flight. @default 0
       */
      overheadMs?: number;
    },
  ) {}

  /** A call ended (any outcome) after `ms`. */
  record(ms: number): void {
    const n = this.o.window ?? 512;
    if (this.latencies.length < n) this.latencies.push(ms);
    else this.latencies[this.next] = ms;
    this.next = (this.next + 1) % n;
  }

  /** The 99th percentile of the latencies kept. */
  p99Ms(): number {
    if (this.latencies.length === 0) return this.o.initialP99Ms ?? 1_000;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!;
  }

  /** Calls to allow in flight at `perSecond` calls a second (undefined: no limit known). */
  cap(perSecond: number | undefined): number {
    const min = this.o.min ?? 4;
    if (perSecond === undefined || !Number.isFinite(perSecond)) return this.o.max;
    const law = Math.ceil(perSecond * ((this.p99Ms() + (this.o.overheadMs ?? 0)) / 1_000) * (this.o.margin ?? 1.5));
    return Math.max(min, Math.min(this.o.max, law));
  }
}
