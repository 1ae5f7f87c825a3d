export interface OutageBreakerOptions {
  /** The window outcomes are counted over. @default 10000 */
  windowMs?: number;
  /** Calls in the window before the breaker may open. @default 10 */
  minCalls?: number;
  /** Share of transient failures in the window that opens the breaker. @default 0.5 */
  failureRatio?: number;
  /** Transient failures in a row that open the breaker whatever the window holds. @default 20 */
  consecutiveFailures?: number;
  /** How long the breaker stays open the first time; doubled per failed probe. @default 2000 */
  openMs?: number;
  /**
   * The longest it stays open before the next probe. A probe is one call: probing every 5 s of a
   * long outage costs a dozen calls a minute, and the lane resumes within 5 s of the provider's
   * return. @default 5000
   */
  maxOpenMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * Detects a provider failing across the board (an outage) from the calls' outcomes, so the lane can
 * be paused instead of each prompt spending its attempts on it. Closed: every call goes. Open: none
 * goes until `openMs` has passed. Half open: one probe call goes; its success closes the breaker,
 * its failure opens it again for twice as long. Rate limiting is not a failure here: a 429 is the
 * provider working as it should.
 */
export class OutageBreaker {
  private readonly o: Required<OutageBreakerOptions>;
  // Outcomes counted in ten slices of the window, so memory stays constant at any call rate.
  private slices: Array<{ start: number; calls: number; failed: number }> = [];
  private stateNow: BreakerState = 'closed';
  private openUntil = 0;
  private openFor: number;
  private probing = false;
  private inARow = 0;
  private probeAt = 0;
  /** Times the breaker opened. */
  opened = 0;

  constructor(options: OutageBreakerOptions = {}) {
    this.o = {
      windowMs: 10_000,
      minCalls: 10,
      failureRatio: 0.5,
      consecutiveFailures: 20,
      openMs: 2_000,
      maxOpenMs: 5_000,
      clock: Date.now,
      ...options,
    };
    this.openFor = this.o.openMs;
  }

  get state(): BreakerState {
    if (this.stateNow === 'open' && this.o.clock() >= this.openUntil) this.stateNow = 'half_open';
    return this.stateNow;
  }

  /** Milliseconds until an open breaker lets a probe through; 0 unless open. */
  get openForMs(): number {
    return this.state === 'open' ? Math.max(0, this.openUntil - this.o.clock()) : 0;
  }

  /**
   * Whether a call may go now: always when closed, never when open, one probe at a time when half
   * open. A caller told no waits `waitMs` and asks again.
   */
  admit(): { go: true; probe: boolean } | { go: false; waitMs: number } {
    const state = this.state;
    if (state === 'closed') return { go: true, probe: false };
    // A probe that never reported (its caller failed elsewhere) is replaced after a while.
    if (state === 'half_open' && (!this.probing || this.o.clock() - this.probeAt > this.o.maxOpenMs)) {
      this.probing = true;
      this.probeAt = this.o.clock();
      return { go: true, probe: true };
    }
    return { go: false, waitMs: state === 'open' ? Math.max(1, this.openUntil - this.o.clock()) : 250 };
  }

  /** Records a call's outcome; `transient` is a 5xx, a timeout or a broken connection. */
  record(outcome: 'ok' | 'transient', probe = false): void {
    const now = this.o.clock();
    if (probe) {
      this.probing = false;
      if (outcome === 'ok') {
        this.stateNow = 'closed';
        this.openFor = this.o.openMs;
        this.slices = [];
      } else {
        this.openFor = Math.min(this.o.maxOpenMs, this.openFor * 2);
        this.open(now);
      }
      return;
    }
    if (this.stateNow !== 'closed') return; // calls that were in flight when it opened
    this.inARow = outcome === 'transient' ? this.inARow + 1 : 0;
    if (this.inARow >= this.o.consecutiveFailures) {
      this.inARow = 0;
      this.slices = [];
      this.open(now);
      return;
    }
    const width = this.o.windowMs / 10;
    const start = now - (now % width);
    let last = this.slices[this.slices.length - 1];
    if (!last || last.start !== start) {
      last = { start, calls: 0, failed: 0 };
      this.slices.push(last);
    }
    last.calls++;
    if (outcome === 'transient') last.failed++;
    while (this.slices.length > 0 && this.slices[0]!.start <= now - this.o.windowMs) this.slices.shift();
    let calls = 0;
    let failed = 0;
    for (const x of this.slices) {
      calls += x.calls;
      failed += x.failed;
    }
    if (calls >= this.o.minCalls && failed / calls >= this.o.failureRatio) {
      this.slices = [];
      this.open(now);
    }
  }

  private open(now: number): void {
    this.stateNow = 'open';
    this.openUntil = now + this.openFor;
    this.opened++;
  }
}
