import type { CrashPoint } from '@sluice/errors';
import type { Consumer, Logger, Message, Producer, SluiceKafka } from '@sluice/kafka';
import { delayTiers, headerText, headers } from '../../dispatcher/src/headers.js';
import { tierTopics } from '../../dispatcher/src/dispatcher.js';

export interface DelayProcessorOptions {
  kafka: SluiceKafka;
  log: Logger;
  /** @default sluice-delay */
  groupId?: string;
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

  constructor(private readonly o: DelayProcessorOptions) {
    this.producer = o.kafka.producer();
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics(tierTopics());
    await this.producer.connect();
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
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.consumer?.disconnect();
    await this.producer.disconnect();
  }
}
