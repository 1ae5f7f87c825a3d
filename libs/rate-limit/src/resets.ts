/**
 * A reset seen: after `lo` and by `hi` (the two calls a jump fell between; a 429's wait says it to
 * the millisecond, lo = hi).
 */
interface Seen {
  lo: number;
  hi: number;
}

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
  private resets: Seen[] = [];
  private fullest = 0;
  /** The window, once three resets agree on it. */
  windowMs: number | undefined;

  /** The shortest time between two resets seen; undefined before two. */
  get shortestGapMs(): number | undefined {
    let gap: number | undefined;
    for (let i = 1; i < this.resets.length; i++) {
      const g = this.resets[i]!.hi - this.resets[i - 1]!.hi;
      if (g > 0) gap = Math.min(gap ?? Infinity, g);
    }
    return gap;
  }

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
      // The reset came between the two calls: by the later one, so that a call sent at a reset
      // foretold from it finds the new window (one sent at the old window's end meets a 429); and
      // after the earlier, which bounds how late that is (a call a second, once a window's budget
      // is spent, sees a reset up to a second late).
      this.note({ lo: n.at, hi: at });
    }
    this.newest = { at, sum, remaining };
  }

  /**
   * A 429 said to wait until `at`: under a fixed window, its reset. (Under a sliding window, when
   * its oldest call leaves: such times fall on no common window, and fit() finds none.)
   */
  refused(at: number): void {
    this.note({ lo: at, hi: at });
  }

  /** A reset seen; one seen twice (a 429's wait, then the first call after it) counts once, as what both say. */
  private note(r: Seen): void {
    const i = this.resets.findIndex((x) => r.lo < x.hi + 50 && x.lo < r.hi + 50);
    if (i >= 0) {
      const x = this.resets[i]!;
      const hi = Math.min(x.hi, r.hi);
      this.resets[i] = { lo: Math.min(hi, Math.max(x.lo, r.lo)), hi };
    } else this.resets.push(r);
    this.resets.sort((a, b) => a.hi - b.hi);
    if (this.resets.length > 8) this.resets.shift();
    this.fit();
  }

  /** When the window in force at `t` resets; undefined while the window is not known. */
  nextReset(t: number): number | undefined {
    const w = this.windowMs;
    if (w === undefined) return undefined;
    // Each reset seen is a bound from above (the first call after it): projected forward, the
    // lowest is the nearest to the true one.
    // Of the resets seen, those another one agrees with (on the same phase of the window): a limit
    // raised mid-window frees room at once, which reads as a reset at no window's end.
    const phase = (r: number) => ((r % w) + w) % w;
    const near = (a: Seen, b: Seen) => {
      const d = Math.abs(phase(a.hi) - phase(b.hi));
      return Math.min(d, w - d) <= Math.min(w / 6, 200) + Math.max(a.hi - a.lo, b.hi - b.lo);
    };
    const agreed = this.resets.filter((r) => this.resets.some((x) => x !== r && near(x, r)));
    let next = Infinity;
    for (const { hi: r } of agreed.length > 0 ? agreed : this.resets)
      next = Math.min(next, r + Math.max(1, Math.ceil((t - r) / w)) * w);
    // A reset is seen at the sending of the first call after it, and that call reached the
    // provider a little later: a call sent at the very time foretold met the old window's 429.
    return next + Math.max(10, 0.01 * w);
  }

  private fit(): void {
    if (this.resets.length < 3) return;
    // All the resets seen, or all but one (a limit raised mid-window frees room at once, and reads
    // as a reset at no window's end): the first that gives a window.
    const found =
      this.windowOf(this.resets) ??
      (this.resets.length >= 4
        ? this.resets
            .map((_, i) =>
              this.windowOf(
                this.resets.filter((_, j) => j !== i),
                false,
              ),
            )
            .find((w) => w !== undefined)
        : undefined);
    if (found !== undefined) this.windowMs = found;
  }

  /**
   * The window the resets `rs` (ascending) fall a whole number of apart, if any: in whole seconds,
   * or else (`other`) any length, while no window is known.
   */
  private windowOf(seen: Seen[], other = true): number | undefined {
    if (seen.length < 3) return undefined;
    const rs = seen.map((r) => r.hi);
    const gaps = rs.slice(1).map((r, i) => r - rs[i]!);
    // What each gap may have been, given when each reset may have come.
    const spans = seen.slice(1).map((r, i) => ({ min: r.lo - seen[i]!.hi, max: r.hi - seen[i]!.lo }));
    const shortest = Math.min(...gaps);
    if (!(shortest > 0)) return undefined;
    // Windows are set in whole seconds (1 s, 10 s, 60 s), and each reset is seen at the first call
    // after it, a little late (a 429's wait says it to the millisecond): the window is the longest
    // whole number of seconds that every gap is a whole multiple of, within a sixth of it and
    // 200 ms. A short window needs more resets to agree (a sliding window's freed bursts land
    // near whole seconds by chance).
    // Where a reset may have come anywhere between two calls a second or more apart, several
    // windows fit: of those, the one the later bounds fit best, the longest where they fit alike.
    const fits = (w: number) => {
      const tolerance = Math.min(w / 6, 200);
      return (
        spans.every(({ min, max }) => Math.max(1, Math.ceil((min - tolerance) / w)) * w <= max + tolerance) &&
        onePhase(seen, w, tolerance)
      );
    };
    // A window found is kept while every reset may still have fallen on it: a reset seen late by
    // a call a second after it, 9.2 s after one seen on time, fitted 9 s of a 1 s window better
    // than 10 s, and the pace went to ten times the limit.
    if (this.windowMs !== undefined && fits(this.windowMs)) return this.windowMs;
    let best: { seconds: number; error: number } | undefined;
    for (let seconds = Math.floor((shortest * 1.2) / 1_000); seconds >= 1; seconds--) {
      const w = seconds * 1_000;
      if (!fits(w)) continue;
      const error = Math.max(...gaps.map((g) => Math.abs(g - Math.max(1, Math.round(g / w)) * w)));
      if (!best || error < best.error - 50) best = { seconds, error };
    }
    if (best) return gaps.length >= (best.seconds < 5 ? 4 : 2) ? best.seconds * 1_000 : undefined;
    // No whole number of seconds fits: a window set otherwise, found as the mean of the gaps,
    // each over its number of windows, where every gap is a whole multiple of the shortest; only
    // while no window is known (a stray reset among whole seconds fits a short one of its own).
    if (!other || this.windowMs !== undefined) return undefined;
    const whole = gaps.every((g) => Math.abs(g / shortest - Math.round(g / shortest)) <= 0.1);
    return whole ? gaps.reduce((a, g) => a + g / Math.round(g / shortest), 0) / gaps.length : undefined;
  }
}

/**
 * Whether one phase of a window of `w` ms falls within every reset's bounds (each widened by
 * `tolerance`): the resets of one fixed window, not gaps that each fit on their own.
 */
function onePhase(seen: Seen[], w: number, tolerance: number): boolean {
  const within = (phase: number, r: Seen) => {
    const lo = r.lo - tolerance;
    const hi = r.hi + tolerance;
    if (hi - lo >= w) return true;
    return lo + ((((phase - lo) % w) + w) % w) <= hi;
  };
  // Where the bounds share a phase, the latest of their starts is one.
  return seen.some((r) => seen.every((x) => within(r.lo - tolerance, x)));
}
