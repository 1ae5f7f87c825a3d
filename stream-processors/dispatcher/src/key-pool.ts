import type { Logger } from '@sluice/kafka';
import type { RateLimiter } from '@sluice/rate-limit';
import { maxParkMs } from './attempt-policy.js';
import type { Pacing } from './pacing.js';
import type { KeyState, PoolKey } from './types.js';

export interface KeyPoolOptions {
  keys: PoolKey[];
  pacing: Pacing;
  limiter: RateLimiter;
  lane: string;
  log: Logger;
  /** This process's share of the lane's limits while buckets cannot be shared (see Dispatcher). */
  share: () => number;
  /** Tokens reserved per call, on average. */
  tokensPerCall: () => number;
  /** Every key is parked: the lane is held. */
  onAllParked: () => void;
  /** The first parked key is free again: the lane may be let go. */
  onUnparked: () => void;
}

/** A call waiting for a grant asks the limiter again at least this often (see acquire()). */
const maxAcquireWaitMs = 1_000;
const now = () => Date.now();

/**
 * The lane's API keys: which one a call takes (the next in turn whose bucket grants it), one
 * call at a time asking the limiter per bucket, and keys parked while quota-blocked.
 */
export class KeyPool {
  readonly keys: KeyState[];
  /** The pool's next key to ask first (round robin). */
  private nextKey = 0;
  /** Per model: the last call queued for a grant (see inTurn). */
  private readonly turns = new Map<string, Promise<void>>();
  /** Calls waiting for a bucket to admit them: woken early when a pace rises. */
  private readonly waiters = new Set<() => void>();
  /** Until when the lane is parked for a quota-blocked key (0: not parked). */
  private parkedUntil = 0;
  private parkTimer: NodeJS.Timeout | undefined;
  private limiterState: 'shared' | 'local' = 'shared';

  constructor(private readonly o: KeyPoolOptions) {
    if (o.keys.length === 0) throw new Error('a dispatcher needs an API key: give adapter and keyId, or keys');
    this.keys = o.keys.map((k) => ({ ...k, parkedUntil: 0 }));
  }

  /** The key whose learner estimates every call's reservation (every answer calibrates it). */
  get first(): KeyState {
    return this.keys[0]!;
  }

  isParked(key: KeyState): boolean {
    return key.parkedUntil > now();
  }

  /** Whether a key of the pool other than `key` takes calls now. */
  othersOpen(key: KeyState): boolean {
    return this.keys.some((k) => k !== key && !this.isParked(k));
  }

  /** Whether the lane is parked (every key of its pool quota-blocked), and until when. */
  get parked(): { until: number } | undefined {
    return this.parkedUntil > now() ? { until: this.parkedUntil } : undefined;
  }

  /** Wakes the calls waiting for a grant: a pace rose. */
  wake(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * A grant for a call of `model` reserving `tokens`, taken in turn: the calls waiting for a
   * grant queue per model, and only the first asks Redis. (Each asking for itself, every one
   * would wake when the bucket had room for one: many Redis calls per grant, and the CPU they cost.)
   */
  take(
    model: string,
    tokens: number,
  ): Promise<{ key: KeyState; sent: { requests: number; tokens: number } | undefined }> {
    const mine = (this.turns.get(model) ?? Promise.resolve()).then(() => this.acquire(model, tokens));
    const done = mine.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(model, done);
    void done.then(() => {
      if (this.turns.get(model) === done) this.turns.delete(model);
    });
    return mine;
  }

  /**
   * Asks the shared limiter, key after key of the pool from the next in turn, until a bucket of
   * `model` grants `tokens`; returns the key and what the limiter counted on it (nothing when
   * Redis did not answer and this process's share of the limits paced the call instead).
   */
  private async acquire(
    model: string,
    tokens: number,
  ): Promise<{ key: KeyState; sent: { requests: number; tokens: number } | undefined }> {
    for (;;) {
      const open = this.keys.filter((k) => !this.isParked(k));
      let waitMs = maxAcquireWaitMs;
      if (open.length === 0) waitMs = Math.min(...this.keys.map((k) => k.parkedUntil - now()));
      for (let i = 0; i < open.length; i++) {
        const key = open[(this.nextKey + i) % open.length]!;
        const learner = this.o.pacing.learner(model, key);
        // Nothing left of a budget until its reset: not asked for even one call (see holdMs()).
        const hold = learner.holdMs();
        if (hold > 0) {
          waitMs = Math.min(waitMs, hold + 1);
          continue;
        }
        const grant = await this.o.limiter.acquire({
          bucket: this.o.pacing.bucketOf(model, key),
          limits: learner.limits(),
          tokens,
          tokensPerCall: this.o.tokensPerCall(),
          share: this.o.share(),
        });
        this.noteLimiter();
        if (grant.granted) {
          this.nextKey = (this.nextKey + i + 1) % Math.max(1, open.length);
          return { key, sent: grant.sent };
        }
        // A budget's reset puts the pace back at the ceiling: ask again then, not a slow grant later.
        waitMs = Math.min(waitMs, grant.retryAfterMs + 5, (learner.changesInMs() ?? Infinity) + 1);
      }
      await this.waitForRoom(waitMs);
    }
  }

  /**
   * Waiting here holds one call slot, not the consumer: the batch loop goes on. A pace that rises
   * meanwhile (slow start doubling, limits learned) wakes it early; one that rises with no event
   * to wake it (a refill measured, the time a budget is spent over) is asked again within
   * `maxAcquireWaitMs`: a grant the pace of a moment put a minute away stalled the lane with room left.
   */
  private waitForRoom(waitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, Math.min(waitMs, maxAcquireWaitMs)));
      this.waiters.add(done);
    });
  }

  /** Logs when the rate limiter falls back to this process's own buckets, and when it is back. */
  private noteLimiter(): void {
    const state = this.o.limiter.state;
    if (state === this.limiterState) return;
    this.limiterState = state;
    if (state === 'local')
      this.o.log.warn(
        { lane: this.o.lane, err: this.o.limiter.lastError, share: this.o.share() },
        "rate limiter's Redis does not answer; pacing at this replica's share of the limits",
      );
    else this.o.log.info({ lane: this.o.lane }, "rate limiter's Redis answers again; buckets shared again");
  }

  /**
   * `key` is quota-blocked for `ms` (at most an hour, then a call finds out again): calls take the
   * pool's other keys meanwhile. Once every key is parked, the lane is held until the first
   * is free again, whatever the outage breaker says meanwhile.
   */
  park(key: KeyState, ms: number, model: string): void {
    const until = now() + Math.min(ms, maxParkMs);
    if (until <= key.parkedUntil) return;
    key.parkedUntil = until;
    const open = this.keys.filter((k) => !this.isParked(k)).length;
    this.o.log.warn(
      { lane: this.o.lane, keyId: key.keyId, model, waitMs: ms, until: new Date(until).toISOString(), keysOpen: open },
      open > 0
        ? 'key quota-blocked: calls take the other keys of the pool until it takes calls again'
        : 'key quota-blocked: lane parked until the provider takes calls again',
    );
    if (open > 0) return;
    this.parkedUntil = Math.min(...this.keys.map((k) => k.parkedUntil));
    this.o.onAllParked();
    clearTimeout(this.parkTimer);
    this.parkTimer = setTimeout(() => {
      this.parkedUntil = 0;
      this.o.log.info({ lane: this.o.lane }, 'lane unparked');
      this.o.onUnparked();
    }, this.parkedUntil - now());
    this.parkTimer.unref();
  }

  stop(): void {
    clearTimeout(this.parkTimer);
  }
}
