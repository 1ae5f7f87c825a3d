import { Gcra, type GcraDecision } from './gcra.js';

/**
 * How a provider or a gateway counts one limit (RATE-LIMITS.md):
 * - `bucket`: refilled continuously (OpenAI, Anthropic; GCRA), holding `windowMs` of rate;
 * - `fixed`: a counter that starts afresh every `windowMs` (Azure's RPM over 1 s or 10 s, Azure's
 *   TPM per minute, the LiteLLM proxy's 60 s windows, envoy's ratelimit service);
 * - `sliding-log`: every unit admitted in the last `windowMs` counts (Cloudflare's "sliding");
 * - `sliding-counter`: the current fixed window's count plus the previous one's, weighted by how
 *   much of it the sliding window still covers (Kong's default "sliding").
 */
export type Accounting = 'bucket' | 'fixed' | 'sliding-log' | 'sliding-counter';
export const accountings: readonly Accounting[] = ['bucket', 'fixed', 'sliding-log', 'sliding-counter'];

/**
 * One limit, however it is counted. A decision's `resetMs` is what an honest server reports as
 * the reset: for a bucket, the time until it is full again (OpenAI's meaning); for a fixed window
 * and a sliding counter, the time until the current window ends (the gateways' meaning); for a
 * sliding log, the time until its oldest unit leaves the window, when room first returns.
 */
export interface Limiter {
  readonly accounting: Accounting;
  readonly limitPerMinute: number;
  /** The window the limit is counted over (the bucket's burst window). */
  readonly windowMs: number;
  /** Units one window allows: the limit per minute scaled to the window. */
  readonly quota: number;
  take(now: number, cost: number): GcraDecision;
  refund(now: number, cost: number): void;
  peek(now: number): GcraDecision;
  /** Another client on the key takes `ratePerMinute` over [from, to); it too is limited. */
  consumeFlow(from: number, to: number, ratePerMinute: number): void;
  /** A new limit (and window), keeping what is in use. */
  setLimit(now: number, limitPerMinute: number, windowMs: number): void;
}

export function createLimiter(
  accounting: Accounting,
  limitPerMinute: number,
  windowMs: number,
  epoch: number,
): Limiter {
  switch (accounting) {
    case 'bucket':
      return new BucketLimiter(limitPerMinute, windowMs);
    case 'fixed':
      return new FixedWindow(limitPerMinute, windowMs, epoch);
    case 'sliding-log':
      return new SlidingLog(limitPerMinute, windowMs);
    case 'sliding-counter':
      return new SlidingCounter(limitPerMinute, windowMs, epoch);
  }
}

class BucketLimiter implements Limiter {
  readonly accounting = 'bucket';
  private readonly g: Gcra;
  constructor(limitPerMinute: number, windowMs: number) {
    this.g = new Gcra({ limitPerMinute, burstWindowMs: windowMs });
  }
  get limitPerMinute(): number {
    return this.g.limitPerMinute;
  }
  get windowMs(): number {
    return this.g.burstWindow;
  }
  get quota(): number {
    return this.g.burstCapacity;
  }
  take(now: number, cost: number): GcraDecision {
    return this.g.take(now, cost);
  }
  refund(now: number, cost: number): void {
    this.g.refund(now, cost);
  }
  peek(now: number): GcraDecision {
    return this.g.peek(now);
  }
  consumeFlow(from: number, to: number, ratePerMinute: number): void {
    this.g.consumeFlow(from, to, ratePerMinute);
  }
  setLimit(now: number, limitPerMinute: number, windowMs: number): void {
    this.g.setLimit(now, limitPerMinute, windowMs);
  }
}

/** Shared by the window accountings: a limit per minute scaled to a window. */
abstract class Windowed {
  limitPerMinute: number;
  windowMs: number;
  constructor(limitPerMinute: number, windowMs: number) {
    this.limitPerMinute = limitPerMinute;
    this.windowMs = windowMs;
  }
  get quota(): number {
    return (this.limitPerMinute * this.windowMs) / 60_000;
  }
  protected decision(allowed: boolean, used: number, resetMs: number, retryAfterMs: number): GcraDecision {
    return {
      allowed,
      remaining: Math.max(0, Math.floor(this.quota - used + 1e-6)),
      resetMs: Math.max(0, resetMs),
      retryAfterMs: Math.ceil(Math.max(0, retryAfterMs)),
      used,
    };
  }
  /** A cost above the whole quota goes only into an empty window, as the bucket lets it. */
  protected fits(used: number, cost: number): boolean {
    return used + Math.min(cost, this.quota) <= this.quota + 1e-9;
  }
}

class FixedWindow extends Windowed implements Limiter {
  readonly accounting = 'fixed';
  private start: number;
  private count = 0;
  constructor(
    limitPerMinute: number,
    windowMs: number,
    private readonly epoch: number,
  ) {
    super(limitPerMinute, windowMs);
    this.start = epoch;
  }
  private roll(now: number): void {
    if (now < this.start + this.windowMs) return;
    this.start = this.epoch + Math.floor((now - this.epoch) / this.windowMs) * this.windowMs;
    this.count = 0;
  }
  take(now: number, cost: number): GcraDecision {
    this.roll(now);
    const used = this.count;
    const reset = this.start + this.windowMs - now;
    if (!this.fits(used, cost)) return this.decision(false, used, reset, reset);
    this.count += cost;
    return this.decision(true, this.count, reset, 0);
  }
  refund(now: number, cost: number): void {
    this.roll(now);
    this.count = Math.max(0, this.count - cost);
  }
  peek(now: number): GcraDecision {
    this.roll(now);
    return this.decision(true, this.count, this.start + this.windowMs - now, 0);
  }
  consumeFlow(from: number, to: number, ratePerMinute: number): void {
    this.roll(to);
    // Only the part of the flow inside the current window counts; earlier windows are gone.
    const units = ((to - Math.max(from, this.start)) * ratePerMinute) / 60_000;
    if (units > 0) this.count = Math.min(this.quota, this.count + units);
  }
  setLimit(now: number, limitPerMinute: number, windowMs: number): void {
    this.roll(now);
    this.limitPerMinute = limitPerMinute;
    if (windowMs !== this.windowMs) {
      this.windowMs = windowMs;
      this.start = this.epoch + Math.floor((now - this.epoch) / windowMs) * windowMs;
    }
  }
}

class SlidingLog extends Windowed implements Limiter {
  readonly accounting = 'sliding-log';
  /** Admitted units in order: times and costs, from `head` on. */
  private at: number[] = [];
  private cost: number[] = [];
  private head = 0;
  private sum = 0;
  private expire(now: number): void {
    while (this.head < this.at.length && this.at[this.head]! <= now - this.windowMs) {
      this.sum -= this.cost[this.head]!;
      this.head++;
    }
    if (this.head > 4_096 && this.head * 2 > this.at.length) {
      this.at = this.at.slice(this.head);
      this.cost = this.cost.slice(this.head);
      this.head = 0;
    }
    if (this.head === this.at.length) this.sum = 0; // float drift
  }
  private resetMs(now: number): number {
    return this.head < this.at.length ? this.at[this.head]! + this.windowMs - now : 0;
  }
  take(now: number, cost: number): GcraDecision {
    this.expire(now);
    const used = this.sum;
    if (!this.fits(used, cost)) {
      // Room returns as the oldest units leave: wait for enough of them.
      let freed = 0;
      let i = this.head;
      const need = used + Math.min(cost, this.quota) - this.quota;
      while (i < this.at.length && freed < need - 1e-9) freed += this.cost[i++]!;
      const wait = i > this.head ? this.at[i - 1]! + this.windowMs - now : this.windowMs;
      return this.decision(false, used, this.resetMs(now), wait);
    }
    this.at.push(now);
    this.cost.push(cost);
    this.sum += cost;
    return this.decision(true, this.sum, this.resetMs(now), 0);
  }
  refund(now: number, cost: number): void {
    this.expire(now);
    // The newest unit of that cost, if still in the window.
    for (let i = this.at.length - 1; i >= this.head; i--) {
      if (this.cost[i] === cost) {
        this.cost[i] = 0;
        this.sum -= cost;
        return;
      }
    }
  }
  peek(now: number): GcraDecision {
    this.expire(now);
    return this.decision(true, this.sum, this.resetMs(now), 0);
  }
  consumeFlow(from: number, to: number, ratePerMinute: number): void {
    this.expire(to);
    const units = ((to - Math.max(from, to - this.windowMs)) * ratePerMinute) / 60_000;
    const room = this.quota - this.sum;
    const take = Math.min(units, room);
    if (take <= 0) return;
    this.at.push(to);
    this.cost.push(take);
    this.sum += take;
  }
  setLimit(now: number, limitPerMinute: number, windowMs: number): void {
    this.limitPerMinute = limitPerMinute;
    this.windowMs = windowMs;
    this.expire(now);
  }
}

class SlidingCounter extends Windowed implements Limiter {
  readonly accounting = 'sliding-counter';
  private start: number;
  private previous = 0;
  private current = 0;
  constructor(
    limitPerMinute: number,
    windowMs: number,
    private readonly epoch: number,
  ) {
    super(limitPerMinute, windowMs);
    this.start = epoch;
  }
  private roll(now: number): void {
    if (now < this.start + this.windowMs) return;
    const next = this.epoch + Math.floor((now - this.epoch) / this.windowMs) * this.windowMs;
    this.previous = next - this.start === this.windowMs ? this.current : 0;
    this.current = 0;
    this.start = next;
  }
  private used(now: number): number {
    const covered = 1 - (now - this.start) / this.windowMs;
    return this.previous * covered + this.current;
  }
  take(now: number, cost: number): GcraDecision {
    this.roll(now);
    const used = this.used(now);
    const reset = this.start + this.windowMs - now;
    if (!this.fits(used, cost)) {
      // The previous window's weight falls linearly: when does enough of it go?
      const over = used + Math.min(cost, this.quota) - this.quota;
      const inWindow = this.previous > 0 ? (over / this.previous) * this.windowMs : Infinity;
      return this.decision(false, used, reset, Math.min(inWindow, reset));
    }
    this.current += cost;
    return this.decision(true, used + cost, reset, 0);
  }
  refund(now: number, cost: number): void {
    this.roll(now);
    this.current = Math.max(0, this.current - cost);
  }
  peek(now: number): GcraDecision {
    this.roll(now);
    return this.decision(true, this.used(now), this.start + this.windowMs - now, 0);
  }
  consumeFlow(from: number, to: number, ratePerMinute: number): void {
    this.roll(to);
    const units = ((to - Math.max(from, this.start)) * ratePerMinute) / 60_000;
    const room = this.quota - this.used(to);
    if (units > 0 && room > 0) this.current += Math.min(units, room);
  }
  setLimit(now: number, limitPerMinute: number, windowMs: number): void {
    this.roll(now);
    this.limitPerMinute = limitPerMinute;
    if (windowMs !== this.windowMs) {
      this.windowMs = windowMs;
      this.previous = 0;
      this.start = this.epoch + Math.floor((now - this.epoch) / windowMs) * windowMs;
    }
  }
}
