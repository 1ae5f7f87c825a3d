import type { CrashPoint } from '@sluice/errors';
import {
  ConsumerSupervisor,
  deadLetterSpec,
  DeadLetters,
  delayTiers,
  GatheringSender,
  headerText,
  laneProvider,
  promptHeaders as headers,
  tierTopics,
  TopicMissingError,
  type Consumer,
  type EachBatchPayload,
  type KafkaMessage,
  type Logger,
  type Message,
  type Producer,
  type SluiceKafka,
} from '@sluice/kafka';

export interface DelayProcessorOptions {
  kafka: SluiceKafka;
  log: Logger;
  /** @default sluice-delay */
  groupId?: string;
  /** A consumer with no fetch for this long is replaced (kafkajs can hang after resets). @default 45000 */
  consumerStallMs?: number;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash?: CrashPoint;
  /** A send to a lane with no answer for this long is sent again. @default 60000 */
  sendAttemptMs?: number;
}

interface Due {
  lane: string | undefined;
  message: Message;
  offset: string;
  /** The delayed record as read: what a dead letter keeps. */
  record: Pick<Message, 'key' | 'value' | 'headers'>;
}

/**
 * Moves delayed prompts back to their lanes when they are due. It never sleeps in a handler: when
 * a partition's head record is not due yet, the partition is paused until it is, and the records
 * from the head on are fetched again after the resume.
 */
export class DelayProcessor {
  private consumer: Consumer | undefined;
  private readonly producer: Producer;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly supervisor: ConsumerSupervisor;
  private stopping = false;
  private readonly deadLetters: DeadLetters;
  /** Writes due records to their lanes, each until it is written (a hung send is sent again). */
  private readonly lanes: GatheringSender;

  constructor(private readonly o: DelayProcessorOptions) {
    this.producer = o.kafka.producer();
    const running = () => !this.stopping;
    this.deadLetters = new DeadLetters(this.producer, { stage: 'delay', running, log: o.log });
    this.lanes = new GatheringSender(this.producer, {
      running,
      log: o.log,
      what: 'delayed prompt',
      attemptMs: o.sendAttemptMs,
      topicExists: (topic) => o.kafka.topicExists(topic, { fresh: true }),
    });
    const stallMs = o.consumerStallMs ?? 45_000;
    this.supervisor = new ConsumerSupervisor({
      start: (current) => this.startConsumer(current),
      stallMs,
      // A handler only sends to lanes, each send answered or sent again within sendAttemptMs.
      batchStallMs: stallMs + 2 * (o.sendAttemptMs ?? 60_000),
      running,
      log: o.log,
      what: 'delay consumer',
    });
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([...tierTopics(), deadLetterSpec()]);
    await this.producer.connect();
    await this.supervisor.start();
  }

  /**
   * Joins the delay group. A consumer found hung (kafkajs after connection resets) is replaced by
   * a new member, which reads on from the committed offsets.
   */
  private async startConsumer(current: () => boolean): Promise<Consumer> {
    // Short fetch waits: a partition resumed when its head is due is fetched again at once.
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId ?? 'sluice-delay',
      // Short, so that a replica that dies is replaced quickly; the handler never blocks long.
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      maxWaitTimeInMs: 200,
    });
    this.consumer = consumer;
    await consumer.connect();
    for (const tier of delayTiers) await consumer.subscribe({ topic: tier.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.onBatch(payload, consumer, current),
    });
    return consumer;
  }

  /**
   * Moves a batch's due records to their lanes and commits past them; at the first record not
   * due yet, pauses the partition until it is.
   */
  private async onBatch(
    { batch, resolveOffset, pause, isRunning, isStale }: EachBatchPayload,
    consumer: Consumer,
    current: () => boolean,
  ): Promise<void> {
    if (!current()) return;
    const { due, wait } = dueOf(batch.messages);
    if (due.length > 0 && isRunning() && !isStale()) {
      await this.moveToLanes(due, batch.topic, batch.partition);
      this.o.crash?.reached('delay.after-produce');
      const last = due[due.length - 1]!.offset;
      for (const d of due) resolveOffset(d.offset);
      await consumer.commitOffsets([
        { topic: batch.topic, partition: batch.partition, offset: String(Number(last) + 1) },
      ]);
    }
    if (wait !== undefined) {
      const resume = pause();
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resume();
      }, wait);
      this.timers.add(timer);
    }
  }

  /**
   * Sends due records back to their lanes. One whose lane is not named, is not a lane or does not
   * exist (a provider removed since) is a dead letter: it never holds the delay partition. A send
   * that Kafka leaves unanswered (a connection a network fault left half-open) is sent again after
   * `sendAttemptMs`, so the handler never waits on it for good.
   */
  private async moveToLanes(due: Due[], topic: string, partition: number): Promise<void> {
    const lost = async (d: Due) =>
      this.deadLetters.send({
        reason: 'LANE_UNKNOWN',
        message: d.lane ? `lane ${d.lane} does not exist` : `the record names no lane (header ${headers.lane})`,
        target: d.lane ?? '',
        source: { topic, partition, offset: d.offset },
        ...d.record,
      });
    const toLanes: Due[] = [];
    for (const d of due) {
      const known =
        d.lane !== undefined && laneProvider(d.lane) !== undefined && (await this.o.kafka.topicExists(d.lane));
      if (known) toLanes.push(d);
      else await lost(d);
    }
    const sent = await Promise.allSettled(toLanes.map((d) => this.lanes.send(d.lane!, d.message)));
    for (const [i, r] of sent.entries()) {
      if (r.status === 'fulfilled') continue;
      // A lane deleted since it was seen is a dead letter; any other failure (stopping) is thrown.
      if (!(r.reason instanceof TopicMissingError)) throw r.reason;
      await lost(toLanes[i]!);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.supervisor.stop();
    for (const t of this.timers) clearTimeout(t);
    await this.consumer?.disconnect();
    await this.producer.disconnect();
  }
}

/** The records of a batch that are due, in order up to the first that is not, and how long until it is. */
function dueOf(messages: KafkaMessage[]): { due: Due[]; wait: number | undefined } {
  const due: Due[] = [];
  for (const m of messages) {
    const dueAt = Number(headerText(m.headers, headers.dueAt) ?? 0);
    if (dueAt > Date.now()) return { due, wait: dueAt - Date.now() };
    const lane = headerText(m.headers, headers.lane);
    const partition = Number(headerText(m.headers, headers.lanePartition));
    due.push({
      lane,
      offset: m.offset,
      record: { key: m.key, value: m.value, headers: m.headers },
      message: {
        key: m.key,
        value: m.value,
        partition: Number.isInteger(partition) ? partition : undefined,
        headers: { [headers.attempts]: headerText(m.headers, headers.attempts) ?? '[]' },
      },
    });
  }
  return { due, wait: undefined };
}
