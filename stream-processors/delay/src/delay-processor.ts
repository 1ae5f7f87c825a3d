import type { CrashPoint } from '@sluice/errors';
import {
  replaceHungConsumer,
  watchConsumer,
  type Consumer,
  type Logger,
  type Message,
  type Producer,
  type SluiceKafka,
} from '@sluice/kafka';
import { delayTiers, headerText, headers } from '../../dispatcher/src/headers.js';
import { tierTopics } from '../../dispatcher/src/dispatcher.js';

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

  constructor(private readonly o: DelayProcessorOptions) {
    this.producer = o.kafka.producer();
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics(tierTopics());
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
        const due: Array<{ lane: string; message: Message; offset: string }> = [];
        let wait: number | undefined;
        for (const m of batch.messages) {
          const dueAt = Number(headerText(m.headers, headers.dueAt) ?? 0);
          if (dueAt > Date.now()) {
            wait = dueAt - Date.now();
            break;
          }
          const lane = headerText(m.headers, headers.lane);
          if (!lane) {
            this.o.log.error(
              { topic: batch.topic, partition: batch.partition, offset: m.offset },
              'delayed record names no lane; skipped',
            );
            resolveOffset(m.offset);
            continue;
          }
          const partition = Number(headerText(m.headers, headers.lanePartition));
          due.push({
            lane,
            offset: m.offset,
            message: {
              key: m.key,
              value: m.value,
              partition: Number.isInteger(partition) ? partition : undefined,
              headers: { [headers.attempts]: headerText(m.headers, headers.attempts) ?? '[]' },
            },
          });
        }
        if (due.length > 0 && isRunning() && !isStale()) {
          const byLane = new Map<string, Message[]>();
          for (const d of due) byLane.set(d.lane, [...(byLane.get(d.lane) ?? []), d.message]);
          await this.producer.sendBatch({
            acks: -1,
            topicMessages: [...byLane].map(([topic, messages]) => ({ topic, messages })),
          });
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

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    for (const t of this.timers) clearTimeout(t);
    await this.consumer?.disconnect();
    await this.producer.disconnect();
  }
}
