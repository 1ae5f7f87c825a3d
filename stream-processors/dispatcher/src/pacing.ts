import { heldBackKey } from '@sluice/job-store';
import type { Logger } from '@sluice/kafka';
import type { RateHeaders } from '@sluice/providers';
import { LimitLearner, type BucketLimits, type RateLimiter } from '@sluice/rate-limit';
import type { Redis } from 'ioredis';
import type { KeyState, PoolKey } from './types.js';

export interface PacingOptions {
  provider: string;
  lane: string;
  /** Limits per model as configured; a model without limits is not rate-limited here. */
  limits: (model: string) => BucketLimits;
  limiter: RateLimiter;
  redis: Redis;
  log: Logger;
  /** See DispatcherOptions.heldBackAfterMs. */
  heldBackAfterMs: number;
  /** A pace rose (or its mode changed): slots are resized and calls waiting at the old pace woken. */
  onRise: () => void;
}

interface Pace {
  mode: string;
  rpm?: number;
  tpm?: number;
}

const now = () => Date.now();

/**
 * What the lane knows of each bucket's limits (a model on a key): its learner, what it shares
 * with the other replicas, the pace it logs, and the slow-lane guard.
 */
export class Pacing {
  /** Per bucket: its learner (the limits stated, configured or probed), and the key. */
  private readonly learners = new Map<string, { l: LimitLearner; key: KeyState }>();
  /** Buckets whose pace is under half of the stated limit: since when, and whether reported. */
  private readonly heldBack = new Map<
    string,
    { since: number; decreases: number; reported: boolean; loggedAt?: number }
  >();
  /** Per bucket: what this process last shared of its limits (JSON) and when, and when it last read the shared ones. */
  private readonly learnedShared = new Map<string, { json: string; at: number }>();
  private readonly learnedRead = new Map<string, number>();
  private readonly paceLogged = new Map<string, Pace & { at: number }>();
  /** Per bucket: the pace last noted (see notePace). */
  private readonly paceSeen = new Map<string, Pace>();

  constructor(private readonly o: PacingOptions) {}

  bucketOf(model: string, key: PoolKey): string {
    return `${this.o.provider}:${model}:${key.keyId}`;
  }

  /** Whether any bucket has been asked about yet. */
  get empty(): boolean {
    return this.learners.size === 0;
  }

  /**
   * The calls a second every bucket's pace allows, summed (one process may call several), leaving
   * out the keys `skip` names (parked ones take no calls); undefined while any pace is unknown.
   */
  callsPerSecond(tokensPerCall: number, skip: (key: KeyState) => boolean): number | undefined {
    let perSecond: number | undefined = 0;
    for (const { l, key } of this.learners.values()) {
      if (skip(key)) continue;
      const r = l.callsPerSecond(tokensPerCall);
      perSecond = r === undefined || perSecond === undefined ? undefined : perSecond + r;
    }
    return perSecond;
  }

  /** What this process knows of a model's limits on a key: stated, configured, or being probed. */
  learner(model: string, key: KeyState): LimitLearner {
    const id = this.bucketOf(model, key);
    let l = this.learners.get(id)?.l;
    if (!l) {
      l = new LimitLearner({ configured: this.o.limits(model) });
      this.learners.set(id, { l, key });
    }
    // Knowing nothing yet, begin from what another replica (or this key's last process) learned:
    // asked at once, then every 2 s until this one knows something of its own.
    if (l.mode === 'slow-start' && now() - (this.learnedRead.get(id) ?? -Infinity) >= 2_000) {
      this.learnedRead.set(id, now());
      void this.readLearned(model, key, l);
    }
    return l;
  }

  /** Limits the provider states: x-ratelimit-limit-* headers of an answer, or a 429's headers or body. */
  learn(model: string, key: KeyState, rate: RateHeaders, inAnswer: boolean): void {
    this.learner(model, key).learn(
      { requestsPerMinute: rate.limitRequests, tokensPerMinute: rate.limitTokens },
      inAnswer,
    );
    this.notePace(model, key);
  }

  private async readLearned(model: string, key: KeyState, l: LimitLearner): Promise<void> {
    const learned = await this.o.limiter.learned(this.bucketOf(model, key));
    if (learned && l.adopt(learned)) {
      this.o.log.info(
        { lane: this.o.lane, model, keyId: key.keyId, by: learned.by },
        'limits learned by another replica taken',
      );
      this.notePace(model, key);
      this.o.onRise(); // the slots for the pace taken, not for slow start's
    }
  }

  /**
   * After anything that may move a model's pace on a key: when its mode changes or a limit moves
   * by a tenth, calls waiting at the old pace try again at once if it rose, what the learner knows
   * is shared with the other replicas, and the pace is logged (at most once a second).
   */
  notePace(model: string, key: KeyState): void {
    const id = this.bucketOf(model, key);
    const l = this.learner(model, key);
    const mode = l.mode;
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = l.limits();
    const seen = this.paceSeen.get(id);
    const unmoved = seen && seen.mode === mode && !moved(rpm, seen.rpm) && !moved(tpm, seen.tpm);
    // Shared again every 10 minutes while unchanged: the shared entry expires an hour after.
    const last = this.learnedShared.get(id);
    if (unmoved && last && now() - last.at < 600_000) return;
    this.share(id, l, last);
    if (unmoved) return;
    this.paceSeen.set(id, { mode, rpm, tpm });
    // Slots for the new pace at once (slow start doubles faster than the 1 s resize): calls short
    // of slots would stall, and the bucket's room then go in a burst.
    if (!seen || seen.mode !== mode || above(rpm, seen.rpm) || above(tpm, seen.tpm)) this.o.onRise();
    const logged = this.paceLogged.get(id);
    if (logged && logged.mode === mode && now() - logged.at < 1_000) return;
    this.paceLogged.set(id, { mode, rpm, tpm, at: now() });
    this.o.log.info({ lane: this.o.lane, model, keyId: key.keyId, mode, rpm, tpm, decreases: l.decreases }, 'pace');
  }

  /** Shares what the learner knows with the other replicas when it changed, or every 10 minutes. */
  private share(id: string, l: LimitLearner, last: { json: string; at: number } | undefined): void {
    const knowledge = l.knowledge();
    if (!knowledge) return;
    const json = JSON.stringify(knowledge);
    if (json === last?.json && now() - last.at < 600_000) return;
    this.learnedShared.set(id, { json, at: now() });
    void this.o.limiter.shareLearned(id, knowledge);
  }

  /**
   * The slow-lane guard: a model whose pace stays under half of what the provider states for
   * `heldBackAfterMs` with no 429 meanwhile is logged with its learner's reason, and the lane's
   * note in Redis (what job views show) says so while it lasts.
   */
  checkHeldBack(): void {
    const t = now();
    for (const [id, { l, key }] of this.learners) {
      const reason = l.heldBack();
      const was = this.heldBack.get(id);
      if (!reason || (was && l.decreases !== was.decreases)) {
        // Healthy again, or a 429 since: a limit met, not a lane starved.
        if (was?.reported) void this.o.redis.del(heldBackKey(this.o.provider, id)).catch(() => undefined);
        if (reason) this.heldBack.set(id, { since: t, decreases: l.decreases, reported: false });
        else this.heldBack.delete(id);
        continue;
      }
      if (!was) {
        this.heldBack.set(id, { since: t, decreases: l.decreases, reported: false });
        continue;
      }
      if (t - was.since < this.o.heldBackAfterMs) continue;
      const note = { reason, since: was.since, keyId: key.keyId, bucket: id };
      void this.o.redis.set(heldBackKey(this.o.provider, id), JSON.stringify(note), 'PX', 5_000).catch(() => undefined);
      if (!was.reported || t - (was.loggedAt ?? 0) >= 300_000) {
        this.o.log.warn(
          { lane: this.o.lane, bucket: id, keyId: key.keyId, reason },
          'lane held back under its stated limit',
        );
        was.loggedAt = t;
      }
      was.reported = true;
    }
  }
}

/** Whether a limit moved by more than a tenth. */
const moved = (a?: number, b?: number) => (a ?? 0) !== (b ?? 0) && Math.abs((a ?? 0) - (b ?? 0)) > 0.1 * (b ?? 0);
/** Whether a limit rose (no limit is above any). */
const above = (a?: number, b?: number) => (a ?? Infinity) > (b ?? Infinity);
