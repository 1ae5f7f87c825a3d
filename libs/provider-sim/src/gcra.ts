/**
 * A GCRA (generic cell rate algorithm) bucket: `limitPerMinute` units per minute, refilled
 * continuously, holding at most `burstWindowMs` worth of rate. All times are milliseconds on the
 * caller's clock, so tests drive it with an injected clock.
 *
 * State is one number, the theoretical arrival time (tat): the moment the bucket would be full
 * again. Units in use now = (tat - now) / interval.
 */
export interface GcraOptions {
  limitPerMinute: number;
  /** How much rate the bucket holds: 1 s, 10 s or 60 s are typical of providers. @default 60000 */
  burstWindowMs?: number;
}

export interface GcraDecision {
  allowed: boolean;
  /** Units that could be admitted right now, after this decision. */
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
  /** When rejected: milliseconds until the same cost would be admitted. */
  retryAfterMs: number;
  /** Units in use at the moment of the decision (before this request). */
  used: number;
}

export class Gcra {
  private intervalMs: number;
  private capacity: number;
  private burstWindowMs: number;
  private limit: number;
  private tat = 0;

  constructor(options: GcraOptions) {
    this.limit = options.limitPerMinute;
    this.burstWindowMs = options.burstWindowMs ?? 60_000;
    this.intervalMs = 60_000 / this.limit;
    this.capacity = (this.limit * this.burstWindowMs) / 60_000;
  }

  get limitPerMinute(): number {
    return this.limit;
  }

  get burstWindow(): number {
    return this.burstWindowMs;
  }

  /** Units the bucket holds when full. */
  get burstCapacity(): number {
    return this.capacity;
  }

  used(now: number): number {
    return Math.max(0, this.tat - now) / this.intervalMs;
  }

  /**
   * Admits `cost` units if they fit. A cost larger than the bucket's capacity is admitted only
   * into a full bucket (and leaves it in debt), so that a large request is slow, not impossible.
   */
  take(now: number, cost: number): GcraDecision {
    const base = Math.max(this.tat, now);
    const usedMs = base - now;
    const capacityMs = this.capacity * this.intervalMs;
    const needMs = Math.min(cost, this.capacity) * this.intervalMs;
    const used = usedMs / this.intervalMs;
    if (usedMs + needMs <= capacityMs + 1e-9) {
      this.tat = base + cost * this.intervalMs;
      return this.decision(now, true, 0, used);
    }
    return this.decision(now, false, usedMs + needMs - capacityMs, used);
  }

  /** Returns `cost` units (a request that was admitted and then not served). */
  refund(now: number, cost: number): void {
    this.tat = Math.max(now, this.tat - cost * this.intervalMs);
  }

  /** Consumes at a steady `ratePerMinute` over [from, to): another client sharing the key. */
  consumeFlow(from: number, to: number, ratePerMinute: number): void {
    if (to <= from || ratePerMinute <= 0) return;
    const units = ((to - from) * ratePerMinute) / 60_000;
    const start = Math.max(this.tat, from);
    // The other client is limited too: it never takes the bucket beyond full.
    this.tat = Math.min(start + units * this.intervalMs, to + this.capacity * this.intervalMs);
  }

  /** Changes the limit, keeping the units in use. */
  setLimit(now: number, limitPerMinute: number, burstWindowMs = this.burstWindowMs): void {
    const used = this.used(now);
    this.limit = limitPerMinute;
    this.burstWindowMs = burstWindowMs;
    this.intervalMs = 60_000 / limitPerMinute;
    this.capacity = (limitPerMinute * burstWindowMs) / 60_000;
    this.tat = now + used * this.intervalMs;
  }

  peek(now: number): GcraDecision {
    return this.decision(now, true, 0, this.used(now));
  }

  private decision(now: number, allowed: boolean, retryAfterMs: number, used: number): GcraDecision {
    const inUseMs = Math.max(0, this.tat - now);
    return {
      allowed,
      // The epsilon keeps float error (60,000 / limit is rarely exact) from costing a unit.
      remaining: Math.max(0, Math.floor(this.capacity - inUseMs / this.intervalMs + 1e-3)),
      resetMs: inUseMs,
      retryAfterMs: Math.ceil(retryAfterMs),
      used,
    };
  }
}

/** A fixed daily window (requests per day), reset at each multiple of 24 h from the epoch given. */
export class DailyCounter {
  private windowStart: number;
  private count = 0;

  constructor(
    private readonly limit: number,
    epoch: number,
  ) {
    this.windowStart = epoch;
  }

  take(now: number): { allowed: boolean; retryAfterMs: number; used: number } {
    const day = 86_400_000;
    while (now >= this.windowStart + day) {
      this.windowStart += day;
      this.count = 0;
    }
    const used = this.count;
    if (this.count + 1 > this.limit) return { allowed: false, retryAfterMs: this.windowStart + day - now, used };
    this.count++;
    return { allowed: true, retryAfterMs: 0, used };
  }

  refund(): void {
    this.count = Math.max(0, this.count - 1);
  }
}
