import {
  ConsumerSupervisor,
  jobsTopic,
  type Consumer,
  type EachBatchPayload,
  type Logger,
  type SluiceKafka,
} from '@sluice/kafka';
import type { Job, JobEvent, SchemaCodecs } from '@sluice/schemas';

export interface JobsFollowerOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  groupId: string;
  /** A consumer with no fetch for this long is replaced. */
  stallMs: number;
  /** Only jobs of these tenants (null: all). */
  tenants: string[] | null;
  log: Logger;
  /** A job's latest state as read, and the partition of sluice.jobs it is on. */
  onJob: (job: Job, partition: number) => void;
  /** The partitions of sluice.jobs this replica holds now (after each join). */
  onAssigned: (partitions: Set<number>) => void;
  /** A hung consumer was replaced. */
  onReplaced: () => void;
}

/**
 * Follows sluice.jobs in the sink's group, so that each job is one replica's. Never commits:
 * every replica reads its partitions of the compacted topic from the start, which gives it the
 * state of each of its jobs. A consumer found hung (kafkajs after connection resets) is replaced
 * by a new member of the group; the old one's events, should it wake, are dropped by the
 * generation check.
 */
export class JobsFollower {
  private consumer: Consumer | undefined;
  private readonly supervisor: ConsumerSupervisor;
  private stopping = false;
  /** Group joins (1 after start; more means rebalances). */
  joins = 0;

  constructor(private readonly o: JobsFollowerOptions) {
    this.supervisor = new ConsumerSupervisor({
      start: (current) => this.startConsumer(current),
      stallMs: o.stallMs,
      running: () => !this.stopping,
      log: o.log,
      what: `${jobsTopic} consumer`,
      onReplaced: o.onReplaced,
    });
  }

  async start(): Promise<void> {
    await this.supervisor.start();
  }

  private async startConsumer(current: () => boolean): Promise<Consumer> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      // A replica killed without leaving holds its jobs until this runs out.
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      maxWaitTimeInMs: 200,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      if (!current()) return;
      this.joins++;
      this.o.onAssigned(new Set(payload.memberAssignment[jobsTopic] ?? []));
    });
    await consumer.connect();
    await consumer.subscribe({ topic: jobsTopic, fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatch: (payload) => this.onBatch(payload, current) });
    return consumer;
  }

  private async onBatch({ batch }: EachBatchPayload, current: () => boolean): Promise<void> {
    for (const m of batch.messages) {
      if (!current()) return;
      if (!m.value) continue;
      let event: JobEvent;
      try {
        event = await this.o.codecs.jobEvent.decode(m.value);
      } catch (err) {
        this.o.log.error({ err, partition: batch.partition, offset: m.offset }, 'job event could not be decoded');
        continue;
      }
      if (this.o.tenants && !this.o.tenants.includes(event.job.tenant)) continue;
      this.o.onJob(event.job, batch.partition);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.supervisor.stop();
    await this.consumer?.disconnect();
  }
}
