import type { CrashPoint } from '@sluice/errors';
import {
  deadLetterSpec,
  DeadLetters,
  delayTiers,
  headerText,
  laneProvider,
  promptHeaders as headers,
  replaceHungConsumer,
  tierTopics,
  unknownTopicError,
  watchConsumer,
  type Consumer,
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
  private generation = 0;
  private unwatch: (() => void) | undefined;
  private stopping = false;
  private readonly deadLetters: DeadLetters;

  constructor(private readonly o: DelayProcessorOptions) {
    this.producer = o.kafka.producer();
    this.deadLetters = new DeadLetters(this.producer, { stage: 'delay', running: () => !this.stopping, log: o.log });
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([...tierTopics(), deadLetterSpec()]);
    await this.producer.connect();
    await this.startConsumer();
  }

  /**
   * Joins the delay group. A consumer found hung (kafkajs after connection resets) is replaced by
   * a new member, which reads on from the committed offsets.
   */
  private async startConsumer(): Promise<void> {
    const generation = ++this.generation;
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
      eachBatch: async ({ batch, resolveOffset, pause, isRunning, isStale }) => {
        if (generation !== this.generation) return;
        const due: Due[] = [];
        let wait: number | undefined;
        for (const m of batch.messages) {
          const dueAt = Number(headerText(m.headers, headers.dueAt) ?? 0);
          if (dueAt > Date.now()) {
            wait = dueAt - Date.now();
            break;
          }
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
      },
    });
    this.unwatch?.();
    this.unwatch = watchConsumer(consumer, {
      stallMs: this.o.consumerStallMs ?? 45_000,
      onStall: ({ idleMs, lastEvent }) => {
        if (this.stopping || generation !== this.generation) return;
        this.o.log.warn({ idleMs, lastEvent }, 'delay consumer hung (no fetch); replacing it');
        void replaceHungConsumer(consumer, {
          start: () => this.startConsumer(),
          running: () => !this.stopping,
          log: this.o.log,
          what: 'delay consumer',
        });
      },
    });
  }

  /**
   * Sends due records back to their lanes. One whose lane is not named, is not a lane or does not
   * exist (a provider removed since) is a dead letter: it never holds the delay partition.
   */
  private async moveToLanes(due: Due[], topic: string, partition: number): Promise<void> {
    let fresh = false;
    for (;;) {
      const lost: Due[] = [];
      const byLane = new Map<string, Message[]>();
      for (const d of due) {
        const known =
          d.lane !== undefined &&
          laneProvider(d.lane) !== undefined &&
          (await this.o.kafka.topicExists(d.lane, { fresh }));
        if (!known) lost.push(d);
        else byLane.set(d.lane!, [...(byLane.get(d.lane!) ?? []), d.message]);
      }
      for (const d of lost)
        await this.deadLetters.send({
          reason: 'LANE_UNKNOWN',
          message: d.lane ? `lane ${d.lane} does not exist` : `the record names no lane (header ${headers.lane})`,
          target: d.lane ?? '',
          source: { topic, partition, offset: d.offset },
          ...d.record,
        });
      if (byLane.size === 0) return;
      try {
        await this.producer.sendBatch({
          acks: -1,
          topicMessages: [...byLane].map(([t, messages]) => ({ topic: t, messages })),
        });
        return;
      } catch (err) {
        // A lane deleted since it was seen: ask again, fresh, and send the rest.
        if (fresh || !unknownTopicError(err)) throw err;
        fresh = true;
        due = due.filter((d) => !lost.includes(d));
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    for (const t of this.timers) clearTimeout(t);
    await this.consumer?.disconnect();
    await this.producer.disconnect();
  }
}
