/**
 * The rate a provider refills a limit's bucket at, read from headers that say only what remains
 * (Azure's x-ratelimit-remaining-*, with no limit beside them).
 *
 * While the bucket is not full, what remains plus what this process has been charged grows at the
 * refill rate less what other clients of the key take: `remaining + charged = c + refill · t`.
 * So the slope of that sum over the last few seconds is the rate available to this process. A
 * full bucket spills its refill and says nothing of it: answers near the fullest seen restart the
 * fit, as does a 429 (its call was not charged, though counted as sent).
 */
export class RefillEstimator {
  private samples: Array<{ at: number; sum: number }> = [];
  private fullest = 0;
  private largestCost = 0;
  private newestAt = -Infinity;
  private fittedAt = -Infinity;
  /** What calls refused with a 429 were counted as sent, and so never charged: taken off each sum. */
  private refused = 0;
  /** The last estimate, per minute; undefined until a fit had enough to go on. */
  perMinute: number | undefined;
  /**
   * The slope of the newest fit, per minute, whatever its sign (under a window that does not
   * refill before its reset it is about 0, or below with another client); undefined after a
   * restart until the next fit.
   */
  slopePerMinute: number | undefined;
  /**
   * The slope of the newest fit before the last restart, per minute: where a window's turn restarts
   * the fit, the best word on what other clients take until a new fit forms. Undefined after
   * forget().
   */
  carried: number | undefined;
  /** What the newest answer said remains. */
  last: number | undefined;
  /** Whether the newest answer found the bucket (about) full. */
  full = false;

  constructor(
    private readonly windowMs = 5_000,
    private readonly minSpanMs = 1_500,
    private readonly minSamples = 8,
    private readonly fullAfterReset = false,
  ) {}

  /**
   * An answer to a call sent at `at` (the provider charged it then), saying `remaining`; `charged`
   * is what this process had sent by then, that call included, and `cost` that call's own.
   */
  observe(at: number, remaining: number, charged: number, cost: number): void {
    if (!Number.isFinite(remaining) || remaining < 0) return; // Azure says -1 at times
    this.largestCost = Math.max(this.largestCost, cost);
    this.fullest = Math.max(this.fullest, remaining);
    if (at >= this.newestAt) this.last = remaining;
    // Two answers in a row at the fullest: the bucket spills, and says nothing of its refill. One
    // alone is a short fixed window's first call after its reset (a 1 s window's every second):
    // a restart there left no fit a second long, and so no measure at all.
    const wasFull = this.full;
    this.full = remaining >= this.fullest - 2 * this.largestCost;
    // (Where a budget until the reset is kept beside the fit, `fullAfterReset` restarts it at
    // once: the room a reset brings is the budget's, not freed meanwhile.)
    if (this.full && (wasFull || this.fullAfterReset)) return this.restart();
    const sum = remaining + charged - this.refused;
    // A jump of more than half of the most seen is a window's reset, not a refill: fit afresh.
    const last = this.samples[this.samples.length - 1];
    if (last && at > last.at && sum - last.sum > 0.5 * this.fullest) this.restart();
    this.samples.push({ at, sum });
    this.newestAt = Math.max(this.newestAt, at);
    const oldest = this.newestAt - this.windowMs;
    if (this.samples[0]!.at < oldest) this.samples = this.samples.filter((x) => x.at >= oldest);
    // A fit is linear in the samples: ten a second are plenty at thousands of calls a second.
    if (at - this.fittedAt >= 100 || at < this.fittedAt) this.fit(at);
  }

  /** The most any answer said remains. */
  get fullestSeen(): number {
    return this.fullest;
  }

  /** What the newest answer said remains, as a share of the most any said; undefined before one. */
  get level(): number | undefined {
    return this.last === undefined || this.fullest <= 0 ? undefined : this.last / this.fullest;
  }

  /** Drops the measure (what it measured no longer holds). */
  forget(): void {
    this.perMinute = undefined;
    this.restart();
    this.carried = undefined;
  }

  /**
   * A call of `cost` met a 429: it was counted as sent, and not charged. The fit goes on: the next
   * sums are taken without it (a restart would leave no measure until several answers came).
   */
  uncharged(cost: number): void {
    this.refused += cost;
  }

  /** Starts the fit afresh. */
  restart(): void {
    if (this.slopePerMinute !== undefined) this.carried = this.slopePerMinute;
    this.samples = [];
    this.newestAt = -Infinity;
    this.slopePerMinute = undefined;
  }

  private fit(at: number): void {
    // One point per 100 ms (the newest in it): a burst of calls is hundreds of samples in a
    // second, and weighed by count it held the slope near its own (nothing freed during a burst)
    // for seconds after it, while room came back.
    const points: Array<{ at: number; sum: number }> = [];
    for (const s of this.samples) {
      const last = points[points.length - 1];
      if (last && Math.floor(last.at / 100) === Math.floor(s.at / 100)) points[points.length - 1] = s;
      else points.push(s);
    }
    const n = points.length;
    // Too few answers in the window for a fit: the last slope is old news, and is dropped (the
    // last rate stays: a measured pace holds until a new measure).
    if (n < this.minSamples) {
      this.slopePerMinute = undefined;
      return;
    }
    this.fittedAt = at;
    let minAt = Infinity;
    let maxAt = -Infinity;
    let mt = 0;
    let ms = 0;
    for (const s of points) {
      minAt = Math.min(minAt, s.at);
      maxAt = Math.max(maxAt, s.at);
      mt += s.at;
      ms += s.sum;
    }
    if (maxAt - minAt < this.minSpanMs) {
      this.slopePerMinute = undefined;
      return;
    }
    mt /= n;
    ms /= n;
    let cov = 0;
    let vt = 0;
    for (const s of points) {
      cov += (s.at - mt) * (s.sum - ms);
      vt += (s.at - mt) ** 2;
    }
    const perMs = cov / vt;
    this.slopePerMinute = perMs * 60_000;
    if (perMs > 0) this.perMinute = perMs * 60_000;
  }
}
