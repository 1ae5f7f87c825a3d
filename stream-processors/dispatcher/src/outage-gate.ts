import type { Logger } from '@sluice/kafka';
import { OutageBreaker, type OutageBreakerOptions } from './breaker.js';

/**
 * The lane's side of the outage breaker: calls wait while it is open, and the lane is held
 * meanwhile (so prompts stay in Kafka instead of spending attempts), then let go so that a prompt
 * comes to probe the provider.
 */
export class OutageGate {
  readonly breaker: OutageBreaker;
  private releaseTimer: NodeJS.Timeout | undefined;

  constructor(
    options: OutageBreakerOptions | undefined,
    private readonly o: { lane: string; log: Logger; hold: () => void; release: () => void },
  ) {
    this.breaker = new OutageBreaker(options);
  }

  /** Waits while the breaker is open; returns whether this call is the breaker's probe. */
  async through(): Promise<boolean> {
    for (;;) {
      const r = this.breaker.admit();
      if (r.go) return r.probe;
      this.o.hold();
      await new Promise((resolve) => setTimeout(resolve, Math.min(r.waitMs, 1_000)));
    }
  }

  /** A call's outcome: a transient failure, or an answer of any kind (the provider is up). */
  record(outcome: 'ok' | 'transient', probe: boolean): void {
    const before = this.breaker.state;
    this.breaker.record(outcome, probe);
    const after = this.breaker.state;
    if (after === 'open' && (before !== 'open' || probe)) {
      const ms = this.breaker.openForMs;
      this.o.log.warn(
        { lane: this.o.lane, opened: this.breaker.opened, pauseMs: ms },
        'provider failing across the board; lane paused',
      );
      this.o.hold();
      // When the pause is over the lane is let go, so that a prompt comes to probe the provider.
      clearTimeout(this.releaseTimer);
      this.releaseTimer = setTimeout(() => this.o.release(), ms);
    } else if (after === 'closed' && before !== 'closed') {
      this.o.log.info({ lane: this.o.lane }, 'provider answers again; lane resumed');
      this.o.release();
    }
  }

  stop(): void {
    clearTimeout(this.releaseTimer);
  }
}
