import { ConsumerSupervisor, type Consumer, type KafkaMessage, type Logger, type SluiceKafka } from '@sluice/kafka';
import type { PromptRequest, SchemaCodecs } from '@sluice/schemas';
import type { FairShare } from './fair-share.js';
import { readAttempts } from './headers.js';
import { OffsetTracker } from './offset-tracker.js';
import type { Task } from './types.js';

export interface LaneConsumerOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  lane: string;
  groupId: string;
  sessionTimeoutMs: number;
  /** A consumer with no fetch for this long is replaced. */
  stallMs: number;
  log: Logger;
  /** The partitions' shares of the call slots: a partition over its share is paused. */
  fair: FairShare;
  /** A prompt read: the dispatcher runs it and calls done() when it is finished. */
  onPrompt: (task: Task) => void;
  /** A record that is not a prompt: the dispatcher dead-letters it and calls done(). */
  onUndecodable: (task: Omit<Task, 'request' | 'history'>) => void;
}

/** How long a fetch of the lane waits for records. */
export const fetchWaitMs = 200;

/**
 * The lane's consumer group member: reads prompts and hands them over at once (so the consumer
 * keeps heartbeating however long calls take), pauses a partition over its fair share of the call
 * slots, commits offsets only past the contiguous finished prefix (OffsetTracker), and replaces
 * itself when kafkajs hangs.
 */
export class LaneConsumer {
  private consumer: Consumer | undefined;
  private readonly supervisor: ConsumerSupervisor;
  private trackers = new Map<number, OffsetTracker>();
  private readonly dirty = new Set<number>();
  private commitTimer: NodeJS.Timeout | undefined;
  private closing = false;
  /** The lane is held (outage breaker, parked key): every partition paused. */
  held = false;
  /** Group joins so far (1 after start; more means rebalances). */
  joins = 0;
  /** Partitions of the lane topic, and how many this process owns (after its first join). */
  private partitionCount = 0;
  private owned: number | undefined;

  constructor(private readonly o: LaneConsumerOptions) {
    this.supervisor = new ConsumerSupervisor({
      start: (current) => this.startConsumer(current),
      stallMs: o.stallMs,
      running: () => !this.closing,
      log: o.log,
      what: 'lane consumer',
      context: { lane: o.lane },
    });
  }

  /** Consumers replaced after a hang. */
  get consumerReplacements(): number {
    return this.supervisor.replacements;
  }

  async start(): Promise<void> {
    this.partitionCount = await this.partitionsOf(this.o.lane);
    await this.supervisor.start();
    this.commitTimer = setInterval(() => void this.commit(), 200);
  }

  /**
   * The share of the lane's partitions this process owns: how much of the lane's limits it may
   * use while replicas cannot share buckets (partitions are spread evenly). 1 until the first join.
   */
  share(): number {
    if (this.partitionCount === 0 || this.owned === undefined) return 1;
    return Math.max(1, this.owned) / this.partitionCount;
  }

  /**
   * Joins the lane's group. A consumer found hung (kafkajs after connection resets: no fetch, no
   * error) is replaced by a new member (the supervisor); calls it started finish and write their
   * outcomes, and its batches, should it wake, are dropped (`current()`). The new member reads from
   * the committed offsets, as after any rebalance.
   */
  private async startConsumer(current: () => boolean): Promise<Consumer> {
    const { lane } = this.o;
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
      if (!current()) return;
      this.joins++;
      this.owned = payload.memberAssignment[lane]?.length ?? 0;
      this.trackers = new Map();
      this.dirty.clear();
      // Pauses do not outlive an assignment here: partitions start unpaused and earn their share.
      this.o.fair.forgetWaiting();
      // A held lane (outage breaker, parked key) stays held through a rejoin or a consumer restart.
      if (this.held) this.flow('pause', [{ topic: lane }]);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: lane, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
        const partition = batch.partition;
        for (const message of batch.messages) {
          if (!isRunning() || isStale() || !current()) return;
          if (!(await this.handOver(message, partition))) return;
          resolveOffset(message.offset);
        }
        // Control records after the last message (an upload's transaction marker) are passed too.
        // (eachBatch has messages, so lastOffset() is the last record fetched, not the log's end.)
        if (current()) this.skipControl(partition, Number(batch.lastOffset()));
      },
    });
    // A fetch of nothing but a control record never reaches eachBatch: kafkajs passes it alone.
    consumer.on(consumer.events.START_BATCH_PROCESS, ({ payload }) => {
      // firstOffset is null when nothing was fetched at all: lastOffset() is then the log's end,
      // which may lie past an open transaction's records.
      if (payload.batchSize === 0 && payload.firstOffset !== null && payload.topic === lane && current())
        this.skipControl(payload.partition, Number(payload.lastOffset));
    });
    if (this.held) this.flow('pause', [{ topic: lane }]);
    return consumer;
  }

  /**
   * Hands one lane record over (a prompt to run, or a record to dead-letter); false when its
   * partition is over its share, which is then paused: the rest is fetched again after resume.
   */
  private async handOver(message: KafkaMessage, partition: number): Promise<boolean> {
    const offset = Number(message.offset);
    const request = await this.decode(message.value, partition, offset);
    // A weight is a finite number whatever a record says: one NaN made every share NaN.
    const priority = Number.isFinite(request?.priority) ? Math.max(0, request!.priority) : 0;
    if (request && !this.o.fair.admit(partition, 1 + priority)) {
      this.pausePartition(partition);
      return false;
    }
    const tracker = this.tracker(partition);
    tracker.start(offset);
    const record = { key: message.key, value: message.value, headers: message.headers };
    // A record that cannot be decoded cannot be answered: a dead letter, then passed.
    if (!request) this.o.onUndecodable({ record, partition, offset, tracker });
    else this.o.onPrompt({ request, record, history: readAttempts(message.headers), partition, offset, tracker });
    return true;
  }

  private async decode(value: Buffer | null, partition: number, offset: number): Promise<PromptRequest | undefined> {
    try {
      if (!value) throw new Error('empty record');
      return await this.o.codecs.promptRequest.decode(value);
    } catch (err) {
      this.o.log.error({ err, lane: this.o.lane, partition, offset }, 'lane record could not be decoded');
      return undefined;
    }
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

  /** A record handed over is finished: committed past once the records before it are too. */
  done({ partition, offset, tracker }: Pick<Task, 'partition' | 'offset' | 'tracker'>): void {
    // A tracker of an earlier assignment commits nothing: the new owner reads from the last commit.
    if (tracker.finish(offset) !== undefined && this.trackers.get(partition) === tracker) this.dirty.add(partition);
  }

  /** A control record at `offset` of `partition`: committed past once the records before it are done. */
  private skipControl(partition: number, offset: number): void {
    if (!Number.isFinite(offset)) return;
    if (this.tracker(partition).skip(offset) !== undefined) this.dirty.add(partition);
  }

  async commit(): Promise<void> {
    if (!this.consumer || this.dirty.size === 0) return;
    const offsets = [...this.dirty].flatMap((partition) => {
      const offset = this.trackers.get(partition)?.commitOffset;
      return offset === undefined ? [] : [{ topic: this.o.lane, partition, offset: String(offset) }];
    });
    this.dirty.clear();
    if (offsets.length === 0) return;
    try {
      await this.consumer.commitOffsets(offsets);
    } catch (err) {
      // A rebalance took the partitions: the new owner re-reads from the last commit.
      this.o.log.warn(
        { err, lane: this.o.lane },
        'offset commit failed; records after the last commit may be read again',
      );
    }
  }

  private pausePartition(partition: number): void {
    this.flow('pause', [{ topic: this.o.lane, partitions: [partition] }]);
  }

  /** Resumes the partitions that are under their share again (unless the lane is held or closing). */
  resumeFair(): void {
    if (this.closing || this.held) return;
    for (const p of this.o.fair.resumable()) this.flow('resume', [{ topic: this.o.lane, partitions: [p] }]);
  }

  /** Pauses every partition until release(). */
  hold(): void {
    if (this.held) return;
    this.held = true;
    this.flow('pause', [{ topic: this.o.lane }]);
  }

  /** Lets a held lane go: partitions over their fair share are paused again on their next prompt. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    if (!this.closing) this.flow('resume', [{ topic: this.o.lane }]);
  }

  /** Stops reading: every partition paused, the watchdog off. */
  close(): void {
    this.closing = true;
    this.supervisor.stop();
    this.flow('pause', [{ topic: this.o.lane }]);
  }

  /** Leaves the group; late commits of this member would fail once it is gone, so none are made after. */
  async leave(): Promise<void> {
    this.supervisor.retire();
    clearInterval(this.commitTimer);
    await this.consumer?.disconnect();
    this.consumer = undefined;
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
      this.o.log.debug({ err, lane: this.o.lane, action }, 'lane consumer not running (restarting); skipped');
    }
  }
}
