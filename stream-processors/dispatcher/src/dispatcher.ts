import { heldBackKey, LiveCountsWriter } from '@sluice/job-store';
import type { Redis } from 'ioredis';
import {
  deadLetterSpec,
  DeadLetters,
  laneTopic,
  promptHeaders,
  replaceHungConsumer,
  resultsTopic,
  tierFor,
  tierTopics,
  GatheringSender,
  TopicMissingError,
  watchConsumer,
  type Consumer,
  type DeadLetter,
  type Logger,
  type Message,
  type Producer,
  type SluiceKafka,
} from '@sluice/kafka';
import { ProviderError, type ChatResult, type ProviderAdapter, type RateHeaders } from '@sluice/providers';
import {
  charsCounter,
  InFlightCap,
  LimitLearner,
  type BucketLimits,
  type RateLimiter,
  type TokenCounter,
} from '@sluice/rate-limit';
import type { CrashPoint } from '@sluice/errors';
import type { Attempt, PromptOutcome, PromptRequest, SchemaCodecs } from '@sluice/schemas';
import { Admission } from './admission.js';
import { backoffMs, readAttempts } from './headers.js';
import { decide, maxParkMs } from './attempt-policy.js';
import { OutageBreaker, type OutageBreakerOptions } from './breaker.js';
import { FairShare } from './fair-share.js';
import { OffsetTracker } from './offset-tracker.js';

export interface DispatcherOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  redis: Redis;
  limiter: RateLimiter;
  /** The lane: prompts come from sluice.requests.<provider>. */
  provider: string;
  adapter?: ProviderAdapter;
  /** Names the API key in bucket names and logs; never the key itself. */
  keyId?: string;
  /**
   * Several API keys for the lane's models, pooled: each has buckets and learned limits of its
   * own, and a call takes the next key in turn whose bucket admits it. Instead of adapter + keyId.
   */
  keys?: PoolKey[];
  /** Limits per model; a model without limits is not rate-limited here. */
  limits: (model: string) => BucketLimits;
  /**
   * Models the lane serves besides each job's own ('*': any), as SLUICE_MODELS names them for the
   * lane; a lane record of another model is a dead letter. @default none (each job's model only)
   */
  models?: readonly string[];
  /** Calls in flight per process, across partitions. @default 64 */
  concurrency?: number;
  /** @default 60000 */
  callTimeoutMs?: number;
  /** Provider calls per prompt before it ends in an error. @default 6 */
  maxAttempts?: number;
  /** Completion budget assumed for prompts without max_tokens. @default 1024 */
  defaultMaxTokens?: number;
  /**
   * Counts a prompt's tokens for its reservation, calibrated by the usage answers report.
   * @default charsCounter (characters / 4; main.ts loads the tokenizer SLUICE_TOKENIZER names)
   */
  tokenCounter?: TokenCounter;
  /** @default sluice-dispatcher-<provider> */
  groupId?: string;
  /** Partitions of the lane topic if this process is the first to create it. @default 12 */
  lanePartitions?: number;
  /**
   * The consumer's session timeout; calls may run longer (heartbeats go on). Short, so that a
   * replica that dies is replaced quickly. @default 10000
   */
  sessionTimeoutMs?: number;
  /**
   * On stop, how long calls in flight may finish before the group is left (see stop()); the
   * prompts of calls still running then are read again by the next owner. @default 2000
   */
  handBackMs?: number;
  /** A lane consumer with no fetch for this long is replaced (kafkajs can hang after resets). @default 45000 */
  consumerStallMs?: number;
  /** A 429 asking to wait longer than this parks the lane (the key is quota-blocked). @default 30000 */
  parkAfterMs?: number;
  /**
   * A model's pace under half of its stated limit for this long without a 429 is reported: a
   * warning, and the lane's held-back note that job views show. @default 60000
   */
  heldBackAfterMs?: number;
  /** When the lane pauses for a provider outage (see OutageBreaker for the defaults). */
  breaker?: OutageBreakerOptions;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash?: CrashPoint;
  log: Logger;
}

/** One API key of a pool: how to call with it, and its name in buckets and logs. */
export interface PoolKey {
  keyId: string;
  adapter: ProviderAdapter;
}

interface KeyState extends PoolKey {
  /** Until when the key is quota-blocked (0: not). */
  parkedUntil: number;
}

interface Task {
  request: PromptRequest;
  /** The lane record as read: what a dead letter keeps. */
  record: Pick<Message, 'key' | 'value' | 'headers'>;
  history: Attempt[];
  partition: number;
  offset: number;
  tracker: OffsetTracker;
}

const now = () => Date.now();
/** A call waiting for a grant asks the limiter again at least this often (see acquire()). */
const maxAcquireWaitMs = 1_000;
/** How long a fetch of the lane waits for records. */
const fetchWaitMs = 200;

/**
 * The dispatcher of one provider lane. Many calls run at once per partition; offsets are committed
 * only past the contiguous finished prefix (OffsetTracker); batches are handed over at once, so the
 * consumer keeps heartbeating however long calls take; partitions are paused while the process is
 * at its concurrency. A prompt ends in exactly one terminal record on sluice.results.<jobId>, or
 * goes to a delay topic for another attempt.
 */
export class Dispatcher {
  private readonly o: Required<
    Omit<DispatcherOptions, 'groupId' | 'breaker' | 'crash' | 'adapter' | 'keyId' | 'keys' | 'models'>
  > & {
    groupId: string;
    crash?: CrashPoint;
  };
  private readonly keys: KeyState[];
  /** The pool's next key to ask first (round robin). */
  private nextKey = 0;
  private readonly lane: string;
  private consumer: Consumer | undefined;
  private generation = 0;
  private unwatch: (() => void) | undefined;
  /** Lane consumers replaced after a hang. */
  consumerReplacements = 0;
  private readonly producer: Producer;
  /** Outcomes and delayed prompts, gathered into a produce request per couple of milliseconds. */
  private readonly outcomes: GatheringSender;
  private readonly delayed: GatheringSender;
  private trackers = new Map<number, OffsetTracker>();
  /** Group joins so far (1 after start; more means rebalances). */
  joins = 0;
  private readonly dirty = new Set<number>();
  private readonly fair: FairShare;
  private stopping = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private capTimer: NodeJS.Timeout | undefined;
  /** Calls in flight from Little's law, at most `concurrency`. */
  readonly inFlightCap: InFlightCap;
  /** Tokens reserved per call, on average (a moving average). */
  private tokensPerCall = 0;
  private readonly admission: Admission;
  private readonly deadLetters: DeadLetters;
  /** Records of ended jobs skipped (read again after a restart: their rows have outcomes). */
  endedSkipped = 0;
  private endedLoggedAt = 0;
  private waitLoggedAt = 0;
  private readonly idle: Array<() => void> = [];
  /** Opens when the provider fails across the board; the lane is paused while it is not closed. */
  readonly breaker: OutageBreaker;
  private laneHeld = false;
  /** Until when the lane is parked for a quota-blocked key (0: not parked). */
  private parkedUntil = 0;
  private parkTimer: NodeJS.Timeout | undefined;
  private releaseTimer: NodeJS.Timeout | undefined;
  /** Per bucket (model and key): its learner (the limits stated, configured or probed), and the key. */
  private readonly learners = new Map<string, { l: LimitLearner; key: KeyState }>();
  /** Buckets whose pace is under half of the stated limit: since when, and whether reported. */
  /** The jobs' live counts (in flight, retrying) this process keeps for the API. */
  private readonly live: LiveCountsWriter;
  private readonly heldBack = new Map<
    string,
    { since: number; decreases: number; reported: boolean; loggedAt?: number }
  >();
  /** Per bucket: what this process last shared of its limits (JSON) and when, and when it last read the shared ones. */
  private readonly learnedShared = new Map<string, { json: string; at: number }>();
  private readonly learnedRead = new Map<string, number>();
  /** Per model: the last call queued for a grant (see inTurn). */
  private readonly turns = new Map<string, Promise<void>>();
  /** Partitions of the lane topic, and how many this process owns (after its first join). */
  private lanePartitionCount = 0;
  private owned: number | undefined;
  private limiterState: 'shared' | 'local' = 'shared';
  private readonly paceLogged = new Map<string, { mode: string; rpm?: number; tpm?: number; at: number }>();
  /** Per bucket: the pace last noted (see notePace). */
  private readonly paceSeen = new Map<string, { mode: string; rpm?: number; tpm?: number }>();
  /** Calls waiting for a bucket to admit them: woken early when a pace rises. */
  private readonly bucketWaiters = new Set<() => void>();

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
    this.lane = laneTopic(options.provider);
    const keys =
      options.keys ?? (options.adapter && options.keyId ? [{ keyId: options.keyId, adapter: options.adapter }] : []);
    if (keys.length === 0) throw new Error('a dispatcher needs an API key: give adapter and keyId, or keys');
    this.keys = keys.map((k) => ({ ...k, parkedUntil: 0 }));
    this.producer = options.kafka.producer();
    const running = () => !this.stopping;
    // A results topic that is gone (an unknown job, deleted after retention) refuses its outcomes,
    // which become dead letters, instead of holding every outcome gathered with them.
    this.outcomes = new GatheringSender(this.producer, {
      running,
      log: options.log,
      what: 'outcome',
      topicExists: (topic) => options.kafka.topicExists(topic, { fresh: true }),
    });
    this.deadLetters = new DeadLetters(this.producer, { stage: 'dispatcher', running, log: options.log });
    this.admission = new Admission({
      redis: options.redis,
      lane: laneTopic(options.provider),
      models: options.models,
      log: options.log,
    });
    this.delayed = new GatheringSender(this.producer, { running, log: options.log, what: 'delayed prompt' });
    this.live = new LiveCountsWriter(options.redis);
    // A slot is held for the call, the outcome's produce (a few ms) and, once freed, until the next
    // fetch of its paused partition brings a prompt (up to the fetch wait).
    this.inFlightCap = new InFlightCap({
      max: this.o.concurrency,
      min: Math.min(8, this.o.concurrency),
      overheadMs: fetchWaitMs + 50,
    });
    // Until the first pace is known: a modest number of slots (resizeSlots() takes over).
    this.fair = new FairShare(Math.min(16, this.o.concurrency));
    this.breaker = new OutageBreaker(options.breaker);
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([
      ...tierTopics(),
      deadLetterSpec(),
      { topic: this.lane, partitions: this.o.lanePartitions },
    ]);
    this.lanePartitionCount = await this.partitionsOf(this.lane);
    // Where Confluent clients register their schema by default (the topic-name strategy): BACKWARD,
    // so that a producer's later schema still reads as Sluice's. Best effort: records decode by id.
    await this.o.codecs
      .backwardCompatible(`${this.lane}-value`)
      .catch((err: unknown) =>
        this.o.log.warn({ err, lane: this.lane }, "the lane's schema subject could not be set to BACKWARD"),
      );
    await this.producer.connect();
    await this.startConsumer();
    this.flushTimer = setInterval(() => void this.commitDirty(), 200);
    this.capTimer = setInterval(() => {
      this.resizeSlots();
      this.checkHeldBack();
    }, 1_000);
  }

  /**
   * The slow-lane guard: a model whose pace stays under half of what the provider states for
   * `heldBackAfterMs` with no 429 meanwhile is logged with its learner's reason, and the lane's
   * note in Redis (what job views show) says so while it lasts.
   */
  private checkHeldBack(): void {
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
          { lane: this.lane, bucket: id, keyId: key.keyId, reason },
          'lane held back under its stated limit',
        );
        was.loggedAt = t;
      }
      was.reported = true;
    }
  }

  /**
   * Joins the lane's group. A consumer found hung (kafkajs after connection resets: no fetch, no
   * error) is replaced by a new member; calls it started finish and write their outcomes, and its
   * batches, should it wake, are dropped by the generation check. The new member reads from the
   * committed offsets, as after any rebalance.
   */
  private async startConsumer(): Promise<void> {
    const generation = ++this.generation;
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      sessionTimeout: this.o.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(this.o.sessionTimeoutMs / 10)),
      // Short fetch waits: a partition resumed after backpressure is fetched again at once.
      maxWaitTimeInMs: fetchWaitMs,
    });
    this.consumer = consumer;
    // A new assignment starts from the committed offsets: fresh trackers. Calls still running for
    // the old assignment finish and produce their outcomes (the sink keeps the first per prompt).
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      if (generation !== this.generation) return;
      this.joins++;
      this.owned = payload.memberAssignment[this.lane]?.length ?? 0;
      this.trackers = new Map();
      this.dirty.clear();
      // Pauses do not outlive an assignment here: partitions start unpaused and earn their share.
      this.fair.forgetWaiting();
      // A held lane (outage breaker, parked key) stays held through a rejoin or a consumer restart.
      if (this.laneHeld) this.flow('pause', [{ topic: this.lane }]);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.lane, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
        const partition = batch.partition;
        for (const message of batch.messages) {
          if (!isRunning() || isStale() || generation !== this.generation) return;
          const offset = Number(message.offset);
          const request = await this.decode(message.value, partition, offset);
          // A weight is a finite number whatever a record says: one NaN made every share NaN.
          const priority = Number.isFinite(request?.priority) ? Math.max(0, request!.priority) : 0;
          if (request && !this.fair.admit(partition, 1 + priority)) {
            // Over its share: stop here; the unresolved rest is fetched again after resume.
            this.pausePartition(partition);
            return;
          }
          const tracker = this.tracker(partition);
          tracker.start(offset);
          resolveOffset(message.offset);
          const record = { key: message.key, value: message.value, headers: message.headers };
          if (!request) {
            // A record that cannot be decoded cannot be answered: a dead letter, then passed.
            void this.deadLetterTracked(partition, offset, tracker, {
              reason: 'UNDECODABLE',
              message: 'not a prompt record of the registry (Avro with a known schema id)',
              target: this.lane,
              ...record,
            });
            continue;
          }
          if (request.attempt > 0) this.live.returned(request.jobId); // back from a delay topic
          void this.runTracked({
            request,
            record,
            history: readAttempts(message.headers),
            partition,
            offset,
            tracker,
          });
        }
        // Control records after the last message (an upload's transaction marker) are passed too.
        // (eachBatch has messages, so lastOffset() is the last record fetched, not the log's end.)
        if (generation === this.generation) this.skipControl(partition, Number(batch.lastOffset()));
      },
    });
    // A fetch of nothing but a control record never reaches eachBatch: kafkajs passes it alone.
    consumer.on(consumer.events.START_BATCH_PROCESS, ({ payload }) => {
      // firstOffset is null when nothing was fetched at all: lastOffset() is then the log's end,
      // which may lie past an open transaction's records.
      if (
        payload.batchSize === 0 &&
        payload.firstOffset !== null &&
        payload.topic === this.lane &&
        generation === this.generation
      )
        this.skipControl(payload.partition, Number(payload.lastOffset));
    });
    if (this.laneHeld) this.flow('pause', [{ topic: this.lane }]);
    this.unwatch?.();
    this.unwatch = watchConsumer(consumer, {
      stallMs: this.o.consumerStallMs,
      onStall: ({ idleMs, lastEvent }) => {
        if (this.stopping || generation !== this.generation) return;
        this.o.log.warn({ lane: this.lane, idleMs, lastEvent }, 'lane consumer hung (no fetch); replacing it');
        this.consumerReplacements++;
        void replaceHungConsumer(consumer, {
          start: () => this.startConsumer(),
          running: () => !this.stopping,
          log: this.o.log,
          what: 'lane consumer',
          context: { lane: this.lane },
        });
      },
    });
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
    this.unwatch?.();
    this.flow('pause', [{ topic: this.lane }]);
    const idle = (ms: number) =>
      this.fair.inFlight === 0
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((r) => this.idle.push(r)),
            new Promise((r) => setTimeout(r, Math.max(0, ms))),
          ]);
    await idle(Math.min(handBackMs, graceMs));
    await this.commitDirty();
    const handedBack = this.fair.inFlight;
    if (handedBack > 0)
      this.o.log.info(
        { lane: this.lane, handedBack },
        'leaving the group with calls in flight: their prompts go to the next owner, their outcomes are still written',
      );
    // Late commits of this member would fail once it is gone: none are made after this.
    this.generation++;
    await this.consumer?.disconnect();
    this.consumer = undefined;
    await idle(until - now());
    if (this.flushTimer) clearInterval(this.flushTimer);
    clearInterval(this.capTimer);
    clearTimeout(this.parkTimer);
    clearTimeout(this.releaseTimer);
    await this.live.close();
    await this.producer.disconnect();
  }

  private async partitionsOf(topic: string): Promise<number> {
    const admin = this.o.kafka.admin();
    await admin.connect();
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      return topics[0]?.partitions.length ?? 0;
    } finally {
      await admin.disconnect();
    }
  }

  private tracker(partition: number): OffsetTracker {
    let t = this.trackers.get(partition);
    if (!t) {
      t = new OffsetTracker();
      this.trackers.set(partition, t);
    }
    return t;
  }

  private pausePartition(partition: number): void {
    this.flow('pause', [{ topic: this.lane, partitions: [partition] }]);
  }

  private resumePartition(partition: number): void {
    this.flow('resume', [{ topic: this.lane, partitions: [partition] }]);
  }

  /** A control record at `offset` of `partition`: committed past once the records before it are done. */
  private skipControl(partition: number, offset: number): void {
    if (!Number.isFinite(offset)) return;
    if (this.tracker(partition).skip(offset) !== undefined) this.dirty.add(partition);
  }

  private async commitDirty(): Promise<void> {
    if (!this.consumer || this.dirty.size === 0) return;
    const offsets = [...this.dirty].flatMap((partition) => {
      const offset = this.trackers.get(partition)?.commitOffset;
      return offset === undefined ? [] : [{ topic: this.lane, partition, offset: String(offset) }];
    });
    this.dirty.clear();
    if (offsets.length === 0) return;
    try {
      await this.consumer.commitOffsets(offsets);
    } catch (err) {
      // A rebalance took the partitions: the new owner re-reads from the last commit.
      this.o.log.warn(
        { err, lane: this.lane },
        'offset commit failed; records after the last commit may be read again',
      );
    }
  }

  private async decode(value: Buffer | null, partition: number, offset: number): Promise<PromptRequest | undefined> {
    try {
      if (!value) throw new Error('empty record');
      return await this.o.codecs.promptRequest.decode(value);
    } catch (err) {
      this.o.log.error({ err, lane: this.lane, partition, offset }, 'lane record could not be decoded');
      return undefined;
    }
  }

  /** Writes a lane record's dead letter, then passes its offset (not before: it is its only copy). */
  private async deadLetterTracked(
    partition: number,
    offset: number,
    tracker: OffsetTracker,
    letter: Omit<DeadLetter, 'source'>,
  ): Promise<void> {
    try {
      await this.deadLetters.send({ ...letter, source: { topic: this.lane, partition, offset } });
    } catch (err) {
      this.o.log.error({ err, lane: this.lane, partition, offset }, 'dead letter not written; the record stays');
      return;
    }
    if (tracker.finish(offset) !== undefined && this.trackers.get(partition) === tracker) this.dirty.add(partition);
  }

  private async runTracked(task: Task): Promise<void> {
    const { partition, offset, tracker } = task;
    try {
      await this.run(task);
      this.o.crash?.reached('dispatcher.after-produce');
    } catch (err) {
      // Producing the outcome failed (Kafka unavailable past the client's retries): the offset is
      // not committed, so the prompt is read again after a restart or rebalance.
      this.o.log.error({ err, lane: this.lane, partition, offset }, 'prompt could not be finished');
      return;
    } finally {
      this.fair.finished(partition);
      if (!this.stopping && !this.laneHeld) for (const p of this.fair.resumable()) this.resumePartition(p);
      if (this.fair.inFlight === 0) for (const r of this.idle.splice(0)) r();
    }
    if (tracker.finish(offset) !== undefined && this.trackers.get(partition) === tracker) this.dirty.add(partition);
  }

  private async run(task: Task): Promise<void> {
    const { request } = task;
    const verdict = await this.admitted(request);
    if (verdict.kind === 'cancelled') {
      return this.terminal(task, 'cancelled', null, {
        code: 'JOB_CANCELLED',
        message: 'the job was cancelled before this prompt ran',
        lineNumber: null,
      });
    }
    if (verdict.kind === 'ended') {
      this.endedSkipped++;
      if (now() - this.endedLoggedAt > 10_000) {
        this.endedLoggedAt = now();
        this.o.log.info(
          { lane: this.lane, jobId: request.jobId, skipped: this.endedSkipped },
          'records of ended jobs skipped (read again after a restart; their rows have outcomes)',
        );
      }
      return;
    }
    if (verdict.kind === 'dead-letter') {
      return this.deadLetters.send({
        reason: verdict.reason,
        message: verdict.message,
        target: this.lane,
        source: { topic: this.lane, partition: task.partition, offset: task.offset },
        ...task.record,
      });
    }
    this.live.started(request.jobId);
    try {
      return await this.call(task);
    } finally {
      this.live.ended(request.jobId);
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
    const calibration = this.learner(request.model, this.keys[0]!);
    const tokens = calibration.estimate(counted, request.parameters.maxTokens ?? this.o.defaultMaxTokens);
    this.tokensPerCall = this.tokensPerCall === 0 ? tokens : 0.99 * this.tokensPerCall + 0.01 * tokens;
    const probe = await this.throughBreaker();
    let history = task.history;
    let result: ChatResult;
    let waits = 0;
    for (let attempt = request.attempt + 1; ; attempt++) {
      const { key, sent } = await this.inTurn(request.model, () => this.acquire(request.model, tokens));
      const bucket = this.bucketOf(request.model, key);
      const learner = this.learner(request.model, key);
      // Stamped with what every replica has sent on the key, which the provider's remaining
      // headers count too. A local grant (Redis did not answer) knows only this process's count:
      // its answer's remaining headers are not measured against it (the send still counts for
      // slow start).
      const stamp = learner.sent(tokens, sent);
      if (learner.mode === 'slow-start') this.notePace(request.model, key);
      const at = now();
      try {
        result = await key.adapter.chat({
          model: request.model,
          messages: request.messages,
          maxTokens: request.parameters.maxTokens,
          temperature: request.parameters.temperature,
          topP: request.parameters.topP,
          stop: request.parameters.stop,
          seed: request.parameters.seed,
          responseFormat: request.parameters.responseFormat
            ? (JSON.parse(request.parameters.responseFormat) as Record<string, unknown>)
            : null,
          timeoutMs: this.o.callTimeoutMs,
        });
        history = [...history, { attempt, at, outcome: 'ok', code: null, message: null, latencyMs: result.latencyMs }];
        this.inFlightCap.record(now() - at);
        learner.admitted(tokens);
        this.notePace(request.model, key);
        calibration.reported(counted, result.usage.promptTokens);
        if (sent)
          learner.remaining(stamp, {
            requests: result.rate.remainingRequests,
            tokens: result.rate.remainingTokens,
            resetRequestsMs: result.rate.resetRequestsMs,
            resetTokensMs: result.rate.resetTokensMs,
          });
        this.learn(request.model, key, result.rate, true);
        break;
      } catch (err) {
        this.o.crash?.reached('dispatcher.after-call');
        const e =
          err instanceof ProviderError
            ? err
            : new ProviderError('transient', (err as Error).message, { provider: this.o.provider, cause: err });
        history = [
          ...history,
          { attempt, at, outcome: e.kind, code: e.code, message: e.message.slice(0, 500), latencyMs: now() - at },
        ];
        this.inFlightCap.record(now() - at);
        this.learn(request.model, key, e.rate, false);
        if (e.kind === 'transient') this.recordOutcome('transient', probe);
        else this.recordOutcome('ok', probe); // the provider answered: it is up
        if (e.kind === 'rate_limited') {
          learner.rateLimited(tokens, e.retryAfterMs);
          // A 429's headers say what remains too (nothing, until its reset): the budget the
          // calls after the wait are paced by, not a burst of the limiter's at the old one.
          if (sent)
            learner.remaining(stamp, {
              requests: e.rate.remainingRequests,
              tokens: e.rate.remainingTokens,
              resetRequestsMs: e.rate.resetRequestsMs,
              resetTokensMs: e.rate.resetTokensMs,
            });
          this.notePace(request.model, key);
          if (e.retryAfterMs !== undefined) await this.o.limiter.pause(bucket, e.retryAfterMs);
          // A long wait (minutes, a daily quota) parks the key, and the lane once every key of the
          // pool is parked: no more prompts are read to meet the same 429, nor sent round the
          // delay topics. Either way the prompt waits here, keeping its call slot, until a bucket
          // admits it again. 429s are the limit's doing, not the prompt's: they do not use up
          // its attempts.
          if ((e.retryAfterMs ?? 0) > this.o.parkAfterMs) this.park(key, e.retryAfterMs!, request.model);
          waits++;
        }
        // A key whose account cannot serve (no credit) leaves the pool for an hour; the prompt
        // goes on with the others. The last key's refusal is the prompt's error.
        const next = decide(
          e,
          { attempt, waits, otherKeys: this.keys.some((k) => k !== key && !this.isParked(k)) },
          { maxAttempts: this.o.maxAttempts, backoffMs },
        );
        if (next.kind === 'wait-here') continue;
        if (next.kind === 'next-key') {
          this.park(key, next.parkMs, request.model);
          continue;
        }
        const t = { ...task, history };
        if (next.kind === 'delay') return this.delay(t, attempt, next.waitMs);
        const code = next.code;
        return this.terminal(t, 'failed', null, { code, message: e.message.slice(0, 2_000), lineNumber: null });
      }
    }
    this.o.crash?.reached('dispatcher.after-call');
    this.recordOutcome('ok', probe);
    return this.terminal({ ...task, history }, 'succeeded', {
      model: result.model,
      text: result.text,
      finishReason: result.finishReason,
      usage: result.usage,
      latencyMs: result.latencyMs,
      body: result.body,
    });
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
        const learner = this.learner(model, key);
        // Nothing left of a budget until its reset: not asked for even one call (see holdMs()).
        const hold = learner.holdMs();
        if (hold > 0) {
          waitMs = Math.min(waitMs, hold + 1);
          continue;
        }
        const grant = await this.o.limiter.acquire({
          bucket: this.bucketOf(model, key),
          limits: learner.limits(),
          tokens,
          tokensPerCall: this.tokensPerCall,
          share: this.share(),
        });
        this.noteLimiter();
        if (grant.granted) {
          this.nextKey = (this.nextKey + i + 1) % Math.max(1, open.length);
          return { key, sent: grant.sent };
        }
        // A budget's reset puts the pace back at the ceiling: ask again then, not a slow grant later.
        waitMs = Math.min(waitMs, grant.retryAfterMs + 5, (learner.changesInMs() ?? Infinity) + 1);
      }
      // Waiting here holds one call slot, not the consumer: the batch loop goes on.
      // A pace that rises meanwhile (slow start doubling, limits learned) wakes it early; one that
      // rises with no event to wake it (a refill measured, the time a budget is spent over) is
      // asked again within `maxAcquireWaitMs`: a grant the pace of a moment put a minute away
      // stalled the lane with room left.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.bucketWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(1, Math.min(waitMs, maxAcquireWaitMs)));
        this.bucketWaiters.add(done);
      });
    }
  }

  private bucketOf(model: string, key: PoolKey): string {
    return `${this.o.provider}:${model}:${key.keyId}`;
  }

  /**
   * This process's share of the lane's limits while the replicas cannot share buckets (Redis does
   * not answer): the lane partitions it owns over all of them, since partitions are spread evenly
   * over the replicas. 1 until the first assignment.
   */
  private share(): number {
    if (this.lanePartitionCount === 0 || this.owned === undefined) return 1;
    return Math.max(1, this.owned) / this.lanePartitionCount;
  }

  /** Logs when the rate limiter falls back to this process's own buckets, and when it is back. */
  private noteLimiter(): void {
    const state = this.o.limiter.state;
    if (state === this.limiterState) return;
    this.limiterState = state;
    if (state === 'local')
      this.o.log.warn(
        { lane: this.lane, err: this.o.limiter.lastError, share: this.share() },
        "rate limiter's Redis does not answer; pacing at this replica's share of the limits",
      );
    else this.o.log.info({ lane: this.lane }, "rate limiter's Redis answers again; buckets shared again");
  }

  /**
   * Runs `f` after the calls before it for `model` have run theirs: the calls waiting for a grant
   * queue here, and only the first asks Redis. (Each asking for itself, every one would wake when
   * the bucket had room for one: many Redis calls per grant, and the CPU they cost.)
   */
  private inTurn<T>(bucket: string, f: () => Promise<T>): Promise<T> {
    const mine = (this.turns.get(bucket) ?? Promise.resolve()).then(f);
    const done = mine.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(bucket, done);
    void done.then(() => {
      if (this.turns.get(bucket) === done) this.turns.delete(bucket);
    });
    return mine;
  }

  /**
   * Sizes the call slots by Little's law: the calls a second the models' paces allow (summed, as
   * one process may call several) × the p99 of recent latencies × 1.5, at most `concurrency`.
   * With no pace known for a model, all `concurrency`.
   */
  private resizeSlots(): void {
    if (this.learners.size === 0) return;
    let perSecond: number | undefined = 0;
    // A parked key takes no calls: its pace needs no slots.
    for (const { l, key } of this.learners.values()) {
      if (this.isParked(key)) continue;
      const r = l.callsPerSecond(this.tokensPerCall);
      perSecond = r === undefined || perSecond === undefined ? undefined : perSecond + r;
    }
    const slots = this.inFlightCap.cap(perSecond);
    if (slots === this.fair.slots) return;
    const grew = slots > this.fair.slots;
    this.fair.resize(slots);
    if (grew && !this.stopping && !this.laneHeld) for (const p of this.fair.resumable()) this.resumePartition(p);
  }

  /**
   * Waits while the outage breaker is open (the lane is paused meanwhile, so prompts stay in Kafka
   * instead of spending attempts); returns whether this call is the breaker's probe.
   */
  private async throughBreaker(): Promise<boolean> {
    for (;;) {
      const r = this.breaker.admit();
      if (r.go) return r.probe;
      this.holdLane();
      await new Promise((resolve) => setTimeout(resolve, Math.min(r.waitMs, 1_000)));
    }
  }

  private recordOutcome(outcome: 'ok' | 'transient', probe: boolean): void {
    const before = this.breaker.state;
    this.breaker.record(outcome, probe);
    const after = this.breaker.state;
    if (after === 'open' && (before !== 'open' || probe)) {
      const ms = this.breaker.openForMs;
      this.o.log.warn(
        { lane: this.lane, opened: this.breaker.opened, pauseMs: ms },
        'provider failing across the board; lane paused',
      );
      this.holdLane();
      // When the pause is over the lane is let go, so that a prompt comes to probe the provider.
      clearTimeout(this.releaseTimer);
      this.releaseTimer = setTimeout(() => this.releaseLane(), ms);
    } else if (after === 'closed' && before !== 'closed') {
      this.o.log.info({ lane: this.lane }, 'provider answers again; lane resumed');
      this.releaseLane();
    }
  }

  private isParked(key: KeyState): boolean {
    return key.parkedUntil > now();
  }

  /**
   * `key` is quota-blocked for `ms` (at most an hour, then a call finds out again): calls take the
   * pool's other keys meanwhile. Once every key is parked, the lane is held until the first
   * is free again, whatever the outage breaker says meanwhile.
   */
  private park(key: KeyState, ms: number, model: string): void {
    const until = now() + Math.min(ms, maxParkMs);
    if (until <= key.parkedUntil) return;
    key.parkedUntil = until;
    const open = this.keys.filter((k) => !this.isParked(k)).length;
    this.o.log.warn(
      { lane: this.lane, keyId: key.keyId, model, waitMs: ms, until: new Date(until).toISOString(), keysOpen: open },
      open > 0
        ? 'key quota-blocked: calls take the other keys of the pool until it takes calls again'
        : 'key quota-blocked: lane parked until the provider takes calls again',
    );
    if (open > 0) return;
    this.parkedUntil = Math.min(...this.keys.map((k) => k.parkedUntil));
    this.holdLane();
    clearTimeout(this.parkTimer);
    this.parkTimer = setTimeout(() => {
      this.parkedUntil = 0;
      this.o.log.info({ lane: this.lane }, 'lane unparked');
      this.releaseLane();
    }, this.parkedUntil - now());
    this.parkTimer.unref();
  }

  /** Whether the lane is parked (every key of its pool quota-blocked), and until when. */
  get parked(): { until: number } | undefined {
    return this.parkedUntil > now() ? { until: this.parkedUntil } : undefined;
  }

  private releaseLane(): void {
    if (!this.laneHeld || this.parkedUntil > now()) return;
    this.laneHeld = false;
    // Partitions over their fair share are paused again by the batch loop on their next prompt.
    if (!this.stopping) this.flow('resume', [{ topic: this.lane }]);
  }

  /**
   * Pauses or resumes lane partitions. kafkajs throws while its consumer restarts after a crash
   * (a broker gone for longer than its retries: "consumer#run must be called first"); a call
   * slot freed then, or a timer, must not take the process down. Nothing is lost by skipping it:
   * the restarted consumer joins with every partition unpaused, the batch loop pauses those over
   * their share again, and GROUP_JOIN holds the lane again if it is held.
   */
  private flow(action: 'pause' | 'resume', topics: Array<{ topic: string; partitions?: number[] }>): void {
    try {
      this.consumer?.[action](topics);
    } catch (err) {
      this.o.log.debug({ err, lane: this.lane, action }, 'lane consumer not running (restarting); skipped');
    }
  }

  private holdLane(): void {
    if (this.laneHeld) return;
    this.laneHeld = true;
    this.flow('pause', [{ topic: this.lane }]);
  }

  /** What this process knows of a model's limits on a key: stated, configured, or being probed. */
  private learner(model: string, key: KeyState): LimitLearner {
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

  private async readLearned(model: string, key: KeyState, l: LimitLearner): Promise<void> {
    const learned = await this.o.limiter.learned(this.bucketOf(model, key));
    if (learned && l.adopt(learned)) {
      this.o.log.info(
        { lane: this.lane, model, keyId: key.keyId, by: learned.by },
        'limits learned by another replica taken',
      );
      this.notePace(model, key);
      this.resizeSlots(); // the slots for the pace taken, not for slow start's
    }
  }

  /** Limits the provider states: x-ratelimit-limit-* headers of an answer, or a 429's headers or body. */
  private learn(model: string, key: KeyState, rate: RateHeaders, inAnswer: boolean): void {
    this.learner(model, key).learn(
      { requestsPerMinute: rate.limitRequests, tokensPerMinute: rate.limitTokens },
      inAnswer,
    );
    this.notePace(model, key);
  }

  /**
   * After anything that may move a model's pace on a key: when its mode changes or a limit moves
   * by a tenth, calls waiting at the old pace try again at once if it rose, what the learner knows
   * is shared with the other replicas, and the pace is logged (at most once a second).
   */
  private notePace(model: string, key: KeyState): void {
    const id = this.bucketOf(model, key);
    const l = this.learner(model, key);
    const mode = l.mode;
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = l.limits();
    const seen = this.paceSeen.get(id);
    const moved = (a?: number, b?: number) => (a ?? 0) !== (b ?? 0) && Math.abs((a ?? 0) - (b ?? 0)) > 0.1 * (b ?? 0);
    const unmoved = seen && seen.mode === mode && !moved(rpm, seen.rpm) && !moved(tpm, seen.tpm);
    // Shared again every 10 minutes while unchanged: the shared entry expires an hour after.
    const last = this.learnedShared.get(id);
    if (unmoved && last && now() - last.at < 600_000) return;
    const knowledge = l.knowledge();
    const json = knowledge && JSON.stringify(knowledge);
    if (knowledge && (json !== last?.json || now() - (last?.at ?? 0) >= 600_000)) {
      this.learnedShared.set(id, { json: json!, at: now() });
      void this.o.limiter.shareLearned(id, knowledge);
    }
    if (unmoved) return;
    this.paceSeen.set(id, { mode, rpm, tpm });
    const above = (a?: number, b?: number) => (a ?? Infinity) > (b ?? Infinity);
    if (!seen || seen.mode !== mode || above(rpm, seen.rpm) || above(tpm, seen.tpm)) {
      // Slots for the new pace at once (slow start doubles faster than the 1 s resize): calls
      // short of slots would stall, and the bucket's room then go in a burst.
      this.resizeSlots();
      for (const wake of [...this.bucketWaiters]) wake();
    }
    const logged = this.paceLogged.get(id);
    if (logged && logged.mode === mode && now() - logged.at < 1_000) return;
    this.paceLogged.set(id, { mode, rpm, tpm, at: now() });
    this.o.log.info({ lane: this.lane, model, keyId: key.keyId, mode, rpm, tpm, decreases: l.decreases }, 'pace');
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

  private async terminal(
    task: Task,
    status: 'succeeded' | 'failed' | 'cancelled',
    result: PromptOutcome['result'],
    error: PromptOutcome['error'] = null,
  ): Promise<void> {
    const r = task.request;
    const outcome: PromptOutcome = {
      jobId: r.jobId,
      promptId: r.promptId,
      rowIndex: r.rowIndex,
      tenant: r.tenant,
      customId: r.customId,
      status,
      result,
      error,
      attempts: task.history.length,
      attemptHistory: task.history,
      completedAt: now(),
    };
    const topic = resultsTopic(r.jobId);
    const message = { key: r.jobId, value: this.o.codecs.promptOutcome.encodeSync(outcome) };
    try {
      await this.outcomes.send(topic, message);
    } catch (err) {
      if (!(err instanceof TopicMissingError)) throw err;
      // Its job's results topic is gone: the outcome (already paid for) is kept as a dead letter.
      await this.deadLetters.send({
        reason: 'TOPIC_MISSING',
        message: `${topic} does not exist (an unknown job, or its topic was deleted)`,
        target: topic,
        source: { topic: this.lane, partition: task.partition, offset: task.offset },
        ...message,
      });
    }
  }

  private async delay(task: Task, attempt: number, waitMs: number): Promise<void> {
    const next: PromptRequest = { ...task.request, attempt };
    await this.delayed.send(tierFor(waitMs), {
      key: task.request.jobId,
      value: this.o.codecs.promptRequest.encodeSync(next),
      headers: {
        [promptHeaders.dueAt]: String(now() + waitMs),
        [promptHeaders.lane]: this.lane,
        [promptHeaders.lanePartition]: String(task.partition),
        [promptHeaders.attempts]: JSON.stringify(task.history),
      },
    });
    this.live.delayed(task.request.jobId);
  }
}
