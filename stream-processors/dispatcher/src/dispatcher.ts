import { LiveCountsWriter } from '@sluice/job-store';
import { deadLetterSpec, laneTopic, tierTopics, type Producer } from '@sluice/kafka';
import { ProviderError, type ChatResult } from '@sluice/providers';
import { charsCounter, InFlightCap, type LimitLearner, type SendStamp } from '@sluice/rate-limit';
import type { CrashPoint } from '@sluice/errors';
import type { Attempt, PromptRequest } from '@sluice/schemas';
import { Admission } from './admission.js';
import { decide } from './attempt-policy.js';
import type { OutageBreaker } from './breaker.js';
import { FairShare } from './fair-share.js';
import { backoffMs } from './headers.js';
import { KeyPool } from './key-pool.js';
import { fetchWaitMs, LaneConsumer } from './lane-consumer.js';
import type { DispatcherOptions } from './options.js';
import { chatRequest, remainingOf, resultOf } from './provider-call.js';
import { OutageGate } from './outage-gate.js';
import { OutcomeWriter } from './outcome-writer.js';
import { Pacing } from './pacing.js';
import type { KeyState, Task } from './types.js';

export type { DispatcherOptions } from './options.js';
export type { PoolKey } from './types.js';

type Settings = Required<
  Omit<DispatcherOptions, 'groupId' | 'breaker' | 'crash' | 'adapter' | 'keyId' | 'keys' | 'models'>
> & { groupId: string; crash?: CrashPoint };

const now = () => Date.now();

/**
 * The dispatcher of one provider lane, composed of its concerns: the lane's consumer (reading,
 * fair shares, commits), the key pool (which key a call takes, parked keys), pacing (what each
 * bucket's limits are), the attempt policy (what a failure leads to) and the outcome writer. Many
 * calls run at once per partition. A prompt ends in exactly one terminal record on
 * sluice.results.<jobId>, or goes to a delay topic for another attempt.
 */
export class Dispatcher {
  private readonly o: Settings;
  private readonly lane: string;
  private readonly producer: Producer;
  private readonly consumer: LaneConsumer;
  private readonly pool: KeyPool;
  private readonly pacing: Pacing;
  private readonly writer: OutcomeWriter;
  private readonly admission: Admission;
  private readonly live: LiveCountsWriter;
  private readonly fair: FairShare;
  /** Calls in flight from Little's law, at most `concurrency`. */
  readonly inFlightCap: InFlightCap;
  /** The outage breaker: the lane is paused while the provider fails across the board. */
  private readonly outage: OutageGate;
  /** Records of ended jobs skipped (read again after a restart: their rows have outcomes). */
  endedSkipped = 0;
  /** Tokens reserved per call, on average (a moving average). */
  private tokensPerCall = 0;
  private stopping = false;
  private capTimer: NodeJS.Timeout | undefined;
  private endedLoggedAt = 0;
  private waitLoggedAt = 0;
  private readonly idle: Array<() => void> = [];

  constructor(options: DispatcherOptions) {
    this.o = {
      concurrency: 2_048,
      callTimeoutMs: 60_000,
      maxAttempts: 6,
      defaultMaxTokens: 1_024,
      tokenCounter: charsCounter,
      groupId: `sluice-dispatcher-${options.provider}`,
      sessionTimeoutMs: 10_000,
      handBackMs: 2_000,
      consumerStallMs: 45_000,
      parkAfterMs: 30_000,
      heldBackAfterMs: 60_000,
      lanePartitions: 12,
      ...options,
    };
    const { kafka, codecs, redis, limiter, log, provider } = options;
    const lane = (this.lane = laneTopic(provider));
    this.producer = kafka.producer();
    this.live = new LiveCountsWriter(redis);
    this.writer = new OutcomeWriter({
      kafka,
      producer: this.producer,
      codecs,
      lane,
      live: this.live,
      log,
      running: () => !this.stopping,
    });
    this.admission = new Admission({ redis, lane, models: options.models, log });
    // A slot is held for the call, the outcome's produce (a few ms) and, once freed, until the next
    // fetch of its paused partition brings a prompt (up to the fetch wait).
    const { concurrency } = this.o;
    this.inFlightCap = new InFlightCap({
      max: concurrency,
      min: Math.min(8, concurrency),
      overheadMs: fetchWaitMs + 50,
    });
    // Until the first pace is known: a modest number of slots (resizeSlots() takes over).
    this.fair = new FairShare(Math.min(16, concurrency));
    this.outage = new OutageGate(options.breaker, {
      lane,
      log,
      hold: () => this.consumer.hold(),
      release: () => this.releaseLane(),
    });
    this.consumer = this.laneConsumer(options);
    this.pacing = new Pacing({
      provider,
      lane,
      limits: this.o.limits,
      limiter,
      redis,
      log,
      heldBackAfterMs: this.o.heldBackAfterMs,
      onRise: () => {
        this.resizeSlots();
        this.pool.wake();
      },
    });
    this.pool = this.keyPool(options);
  }

  private laneConsumer(options: DispatcherOptions): LaneConsumer {
    return new LaneConsumer({
      kafka: options.kafka,
      codecs: options.codecs,
      lane: this.lane,
      groupId: this.o.groupId,
      sessionTimeoutMs: this.o.sessionTimeoutMs,
      stallMs: this.o.consumerStallMs,
      log: options.log,
      fair: this.fair,
      onPrompt: (task) => {
        if (task.request.attempt > 0) this.live.returned(task.request.jobId); // back from a delay topic
        void this.runTracked(task);
      },
      onUndecodable: (task) => void this.deadLetterUndecodable(task),
    });
  }

  private keyPool(options: DispatcherOptions): KeyPool {
    const { adapter, keyId } = options;
    return new KeyPool({
      keys: options.keys ?? (adapter && keyId ? [{ keyId, adapter }] : []),
      pacing: this.pacing,
      limiter: options.limiter,
      lane: this.lane,
      log: options.log,
      share: () => this.consumer.share(),
      tokensPerCall: () => this.tokensPerCall,
      onAllParked: () => this.consumer.hold(),
      onUnparked: () => this.releaseLane(),
    });
  }

  /** Opens when the provider fails across the board; the lane is paused while it is not closed. */
  get breaker(): OutageBreaker {
    return this.outage.breaker;
  }

  /** Group joins so far (1 after start; more means rebalances). */
  get joins(): number {
    return this.consumer.joins;
  }

  /** Lane consumers replaced after a hang. */
  get consumerReplacements(): number {
    return this.consumer.consumerReplacements;
  }

  /** Whether the lane is parked (every key of its pool quota-blocked), and until when. */
  get parked(): { until: number } | undefined {
    return this.pool.parked;
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([
      ...tierTopics(),
      deadLetterSpec(),
      { topic: this.lane, partitions: this.o.lanePartitions },
    ]);
    // Where Confluent clients register their schema by default (the topic-name strategy): BACKWARD,
    // so that a producer's later schema still reads as Sluice's. Best effort: records decode by id.
    await this.o.codecs
      .backwardCompatible(`${this.lane}-value`)
      .catch((err: unknown) =>
        this.o.log.warn({ err, lane: this.lane }, "the lane's schema subject could not be set to BACKWARD"),
      );
    await this.producer.connect();
    await this.consumer.start();
    this.capTimer = setInterval(() => {
      this.resizeSlots();
      this.pacing.checkHeldBack();
    }, 1_000);
  }

  /**
   * Stops taking prompts and leaves the lane's group soon, so that another replica takes the
   * partitions without waiting out a session timeout (a rolling deploy held them for as long as
   * the slowest call): the calls in flight get `handBackMs` to finish, what is done is committed,
   * and the group is left. Calls still running then go on (up to `graceMs` in all) and write their
   * outcomes; their prompts are handed back (not committed), so the next owner calls them again,
   * and the sink keeps the first outcome of each row.
   */
  async stop(graceMs = 30_000, handBackMs = this.o.handBackMs): Promise<void> {
    this.stopping = true;
    const until = now() + graceMs;
    this.consumer.close();
    const idle = (ms: number) =>
      this.fair.inFlight === 0
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((r) => this.idle.push(r)),
            new Promise((r) => setTimeout(r, Math.max(0, ms))),
          ]);
    await idle(Math.min(handBackMs, graceMs));
    await this.consumer.commit();
    const handedBack = this.fair.inFlight;
    if (handedBack > 0)
      this.o.log.info(
        { lane: this.lane, handedBack },
        'leaving the group with calls in flight: their prompts go to the next owner, their outcomes are still written',
      );
    await this.consumer.leave();
    await idle(until - now());
    clearInterval(this.capTimer);
    this.outage.stop();
    this.pool.stop();
    await this.live.close();
    await this.producer.disconnect();
  }

  /** Writes an undecodable lane record's dead letter, then passes it (not before: it is its only copy). */
  private async deadLetterUndecodable(task: Omit<Task, 'request' | 'history'>): Promise<void> {
    try {
      await this.writer.deadLetter(task, {
        reason: 'UNDECODABLE',
        message: 'not a prompt record of the registry (Avro with a known schema id)',
        target: this.lane,
        ...task.record,
      });
    } catch (err) {
      const { partition, offset } = task;
      this.o.log.error({ err, lane: this.lane, partition, offset }, 'dead letter not written; the record stays');
      return;
    }
    this.consumer.done(task);
  }

  private async runTracked(task: Task): Promise<void> {
    try {
      await this.run(task);
      this.o.crash?.reached('dispatcher.after-produce');
    } catch (err) {
      // Producing the outcome failed (Kafka unavailable past the client's retries): the offset is
      // not committed, so the prompt is read again after a restart or rebalance.
      const { partition, offset } = task;
      this.o.log.error({ err, lane: this.lane, partition, offset }, 'prompt could not be finished');
      return;
    } finally {
      this.fair.finished(task.partition);
      this.consumer.resumeFair();
      if (this.fair.inFlight === 0) for (const r of this.idle.splice(0)) r();
    }
    this.consumer.done(task);
  }

  private async run(task: Task): Promise<void> {
    const { request } = task;
    const verdict = await this.admitted(request);
    if (verdict.kind === 'cancelled')
      return this.writer.terminal(task, 'cancelled', null, {
        code: 'JOB_CANCELLED',
        message: 'the job was cancelled before this prompt ran',
        lineNumber: null,
      });
    if (verdict.kind === 'ended') return this.skipEnded(request);
    if (verdict.kind === 'dead-letter')
      return this.writer.deadLetter(task, {
        reason: verdict.reason,
        message: verdict.message,
        target: this.lane,
        ...task.record,
      });
    this.live.started(request.jobId);
    try {
      return await this.call(task);
    } finally {
      this.live.ended(request.jobId);
    }
  }

  private skipEnded(request: PromptRequest): void {
    this.endedSkipped++;
    if (now() - this.endedLoggedAt <= 10_000) return;
    this.endedLoggedAt = now();
    this.o.log.info(
      { lane: this.lane, jobId: request.jobId, skipped: this.endedSkipped },
      'records of ended jobs skipped (read again after a restart; their rows have outcomes)',
    );
  }

  /** The admission's verdict; while the job view cannot say, the record waits (and is not passed). */
  private async admitted(request: PromptRequest) {
    for (;;) {
      const verdict = await this.admission.check(request);
      if (verdict.kind !== 'wait') return verdict;
      if (this.stopping) throw new Error(`stopping while ${verdict.why}`);
      if (now() - this.waitLoggedAt > 30_000) {
        this.waitLoggedAt = now();
        this.o.log.warn(
          { lane: this.lane, jobId: request.jobId },
          `prompts wait: ${verdict.why}; the ingest API rebuilds it from sluice.jobs when it starts`,
        );
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }

  /**
   * Calls the provider for an admitted prompt, through the limiter, its waits and retries, and
   * writes its outcome (or sends it to a delay topic).
   */
  private async call(task: Task): Promise<void> {
    const { request } = task;
    const counted = this.o.tokenCounter.count(request.messages);
    // Reservations are estimated by the first key's learner, which every answer calibrates.
    const calibration = this.pacing.learner(request.model, this.pool.first);
    const tokens = calibration.estimate(counted, request.parameters.maxTokens ?? this.o.defaultMaxTokens);
    this.tokensPerCall = this.tokensPerCall === 0 ? tokens : 0.99 * this.tokensPerCall + 0.01 * tokens;
    const probe = await this.outage.through();
    let history = task.history;
    let waits = 0;
    for (let attempt = request.attempt + 1; ; attempt++) {
      const { key, sent } = await this.pool.take(request.model, tokens);
      const learner = this.pacing.learner(request.model, key);
      // Stamped with what every replica has sent on the key, which the provider's remaining
      // headers count too. A local grant (Redis did not answer) knows only this process's count:
      // its answer's remaining headers are not measured against it (the send still counts for
      // slow start).
      const stamp = learner.sent(tokens, sent);
      if (learner.mode === 'slow-start') this.pacing.notePace(request.model, key);
      const at = now();
      const tried = await this.attempt(key, request, attempt);
      history = [...history, tried.record];
      this.inFlightCap.record(now() - at);
      const rest = { key, learner, stamp, tokens };
      if ('result' in tried) {
        this.answered(request.model, { ...rest, calibration, counted }, tried.result, sent !== undefined);
        this.o.crash?.reached('dispatcher.after-call');
        this.outage.record('ok', probe);
        return this.writer.terminal({ ...task, history }, 'succeeded', resultOf(tried.result));
      }
      const e = tried.error;
      this.o.crash?.reached('dispatcher.after-call');
      await this.failed(request.model, rest, e, probe, sent !== undefined);
      if (e.kind === 'rate_limited') waits++;
      // A key whose account cannot serve (no credit) leaves the pool for an hour; the prompt
      // goes on with the others. The last key's refusal is the prompt's error.
      const next = decide(
        e,
        { attempt, waits, otherKeys: this.pool.othersOpen(key) },
        { maxAttempts: this.o.maxAttempts, backoffMs },
      );
      if (next.kind === 'wait-here') continue;
      if (next.kind === 'next-key') {
        this.pool.park(key, next.parkMs, request.model);
        continue;
      }
      const t = { ...task, history };
      if (next.kind === 'delay') return this.writer.delay(t, attempt, next.waitMs);
      return this.writer.terminal(t, 'failed', null, {
        code: next.code,
        message: e.message.slice(0, 2_000),
        lineNumber: null,
      });
    }
  }

  /** One call of the provider with `key`: its answer or its error, and the attempt's record. */
  private async attempt(
    key: KeyState,
    request: PromptRequest,
    attempt: number,
  ): Promise<{ result: ChatResult; record: Attempt } | { error: ProviderError; record: Attempt }> {
    const at = now();
    try {
      const result = await key.adapter.chat(chatRequest(request, this.o.callTimeoutMs));
      return { result, record: { attempt, at, outcome: 'ok', code: null, message: null, latencyMs: result.latencyMs } };
    } catch (err) {
      const e =
        err instanceof ProviderError
          ? err
          : new ProviderError('transient', (err as Error).message, { provider: this.o.provider, cause: err });
      const message = e.message.slice(0, 500);
      return { error: e, record: { attempt, at, outcome: e.kind, code: e.code, message, latencyMs: now() - at } };
    }
  }

  /** What an answer teaches: the bucket's budget left, the limits stated, the tokenizer's calibration. */
  private answered(
    model: string,
    a: {
      key: KeyState;
      learner: LimitLearner;
      stamp: SendStamp;
      tokens: number;
      counted: number;
      calibration: LimitLearner;
    },
    result: ChatResult,
    shared: boolean,
  ): void {
    a.learner.admitted(a.tokens);
    this.pacing.notePace(model, a.key);
    a.calibration.reported(a.counted, result.usage.promptTokens);
    if (shared) a.learner.remaining(a.stamp, remainingOf(result.rate));
    this.pacing.learn(model, a.key, result.rate, true);
  }

  /** What a failed call teaches (limits stated, the provider up or failing), and a 429's waits. */
  private async failed(
    model: string,
    a: { key: KeyState; learner: LimitLearner; stamp: SendStamp; tokens: number },
    e: ProviderError,
    probe: boolean,
    shared: boolean,
  ): Promise<void> {
    this.pacing.learn(model, a.key, e.rate, false);
    this.outage.record(e.kind === 'transient' ? 'transient' : 'ok', probe); // an answer: the provider is up
    if (e.kind !== 'rate_limited') return;
    a.learner.rateLimited(a.tokens, e.retryAfterMs);
    // A 429's headers say what remains too (nothing, until its reset): the budget the calls after
    // the wait are paced by, not a burst of the limiter's at the old one.
    if (shared) a.learner.remaining(a.stamp, remainingOf(e.rate));
    this.pacing.notePace(model, a.key);
    if (e.retryAfterMs !== undefined) await this.o.limiter.pause(this.pacing.bucketOf(model, a.key), e.retryAfterMs);
    // A long wait (minutes, a daily quota) parks the key, and the lane once every key of the pool
    // is parked: no more prompts are read to meet the same 429, nor sent round the delay topics.
    // Either way the prompt waits here, keeping its call slot, until a bucket admits it again.
    // 429s are the limit's doing, not the prompt's: they do not use up its attempts.
    if ((e.retryAfterMs ?? 0) > this.o.parkAfterMs) this.pool.park(a.key, e.retryAfterMs!, model);
  }

  /**
   * Sizes the call slots by Little's law: the calls a second the models' paces allow (summed, as
   * one process may call several) × the p99 of recent latencies × 1.5, at most `concurrency`.
   * With no pace known for a model, all `concurrency`.
   */
  private resizeSlots(): void {
    if (this.pacing.empty) return;
    // A parked key takes no calls: its pace needs no slots.
    const perSecond = this.pacing.callsPerSecond(this.tokensPerCall, (key) => this.pool.isParked(key));
    const slots = this.inFlightCap.cap(perSecond);
    if (slots === this.fair.slots) return;
    const grew = slots > this.fair.slots;
    this.fair.resize(slots);
    if (grew) this.consumer.resumeFair();
  }

  /** Lets the lane go unless every key is still parked. */
  private releaseLane(): void {
    if (!this.pool.parked) this.consumer.release();
  }
}
