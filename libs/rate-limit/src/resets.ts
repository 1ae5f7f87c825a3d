/**
 * When a limit whose answers say only what remains (Azure's x-ratelimit-remaining-*, no reset
 * beside it) resets: a fixed window shows as `remaining + sent` jumping up by most of what the
 * window holds, once a window, while a bucket or a sliding window frees room a little at a time.
 * Three such jumps a window apart (or whole multiples of it, a window with no call in it) give
 * the window's length, and so each next reset: then what remains is a budget until it, as
 * OpenAI's reset header would have said.
 */
export class ResetWatch {
  private newest: { at: number; sum: number; remaining: number } | undefined;
  private resets: number[] = [];
  private fullest = 0;
  /** The window, once three resets agree on it. */
  windowMs: number | undefined;

  /** The most a window was seen to hold, per minute; undefined while the window is not known. */
  get perMinute(): number | undefined {
    return this.windowMs === undefined ? undefined : ((this.fullest + 1) * 60_000) / this.windowMs;
  }

  /** An answer to a call sent at `at`, saying `remaining`, with `charged` sent by then. */
  observe(at: number, remaining: number, charged: number): void {
    if (!Number.isFinite(remaining) || remaining < 0) return;
    this.fullest = Math.max(this.fullest, remaining);
    const n = this.newest;
    if (n && at <= n.at) return; // an older call's answer: the newest one holds
    const sum = remaining + charged;
    if (n && sum - n.sum > 0.5 * this.fullest && remaining - n.remaining > 0.5 * this.fullest) {
      // The reset came between the two calls: the later one is taken, so that a call sent at a
      // reset foretold from it finds the new window (one sent at the old window's end meets a 429).
      this.resets.push(at);
      if (this.resets.length > 8) this.resets.shift();
      this.fit();
    }
    this.newest = { at, sum, remaining };
  }

  /** When the window in force at `t` resets; undefined while the window is not known. */
  nextReset(t: number): number | undefined {
    const w = this.windowMs;
    if (w === undefined) return undefined;
    // Each reset seen is a bound from above (the first call after it): projected forward, the
    // lowest is the nearest to the true one.
    let next = Infinity;
    for (const r of this.resets) next = Math.min(next, r + Math.max(1, Math.ceil((t - r) / w)) * w);
    return next;
  }

  private fit(): void {
    if (this.resets.length < 3) return;
    const gaps = this.resets.slice(1).map((r, i) => r - this.resets[i]!);
    const w = Math.min(...gaps);
    if (!(w > 0)) return;
    // Every gap a whole number of windows, within a tenth of one.
    const whole = gaps.every((g) => Math.abs(g / w - Math.round(g / w)) <= 0.1);
    // The mean of the gaps, each over its number of windows: the middles' errors average out.
    const mean = whole ? gaps.reduce((a, g) => a + g / Math.round(g / w), 0) / gaps.length : undefined;
    // Windows are set in whole seconds (1 s, 10 s, 60 s): a measure within a tenth of one is taken
    // as it, since the error of each reset's time would otherwise add up over the windows.
    const seconds = mean === undefined ? 0 : Math.round(mean / 1_000) * 1_000;
    this.windowMs = mean !== undefined && seconds > 0 && Math.abs(mean - seconds) <= 0.1 * seconds ? seconds : mean;
  }
}
