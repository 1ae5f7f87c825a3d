// Must stay the first import: it replaces a kafkajs module before kafkajs loads it.
import './linear-grouping.js';
import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type ConsumerConfig,
  type ITopicConfig,
  type LogEntry,
  type Message,
  type Producer,
  type Transaction,
} from 'kafkajs';

export type { Admin, Consumer, Message, Producer, Transaction };

/** The logging Sluice hands its libraries: pino's shape (an object first, then a message). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface KafkaClientOptions {
  brokers: string[];
  clientId: string;
  logger?: Logger;
  /** @default 5000 */
  connectionTimeoutMs?: number;
  /** @default 30000 */
  requestTimeoutMs?: number;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  /** @default 1 */
  replicationFactor?: number;
  /** Topic-level settings, e.g. { 'cleanup.policy': 'compact' }. */
  config?: Record<string, string>;
}

export interface SluiceKafka {
  admin(): Admin;
  producer(options?: { transactionalId?: string; idempotent?: boolean }): Producer;
  consumer(config: ConsumerConfig): Consumer;
  /** Creates the topics that do not exist yet; existing topics are left as they are. */
  ensureTopics(specs: TopicSpec[]): Promise<void>;
  deleteTopics(topics: string[]): Promise<void>;
}

/** Bridges kafkajs's log calls to Sluice's logger, at warn and above unless debugging. */
function logCreator(logger: Logger | undefined) {
  return () =>
    ({ level, log }: LogEntry) => {
      if (!logger) return;
      const { message, ...rest } = log;
      if (level === logLevel.ERROR) logger.error(rest, `kafka: ${message}`);
      else if (level === logLevel.WARN) logger.warn(rest, `kafka: ${message}`);
      else if (level === logLevel.INFO) logger.debug(rest, `kafka: ${message}`);
    };
}

/**
 * Until every partition of `topics` answers on its leader, or 30 s. Metadata naming a leader is
 * not enough: the broker may not host the partition yet ("not the leader for that
 * topic-partition"), so this asks each partition's leader for its offsets.
 */
async function waitForLeaders(admin: Admin, topics: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      for (const topic of topics) await admin.fetchTopicOffsets(topic);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function createKafka(options: KafkaClientOptions): SluiceKafka {
  const kafka = new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    connectionTimeout: options.connectionTimeoutMs ?? 5_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    logLevel: logLevel.WARN,
    logCreator: logCreator(options.logger),
  });
  const ensureTopics = async (specs: TopicSpec[]) => {
    if (specs.length === 0) return;
    const admin = kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      const missing = specs.filter((s) => !existing.has(s.topic));
      // A listed topic may have been created a moment ago by another replica: wait for it too.
      if (missing.length === 0) return await waitForLeaders(admin, specs.map((s) => s.topic));
      const topics: ITopicConfig[] = missing.map((s) => ({
        topic: s.topic,
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor ?? 1,
        configEntries: Object.entries(s.config ?? {}).map(([name, value]) => ({ name, value })),
      }));
      // When another replica created a topic between our list and create, kafkajs returns at once
      // without waiting for its leaders, and a produce or subscribe right after fails with "This
      // server does not host this topic-partition" (several roles starting on a fresh cluster).
      await admin.createTopics({ topics, waitForLeaders: true });
      await waitForLeaders(admin, specs.map((s) => s.topic));
    } finally {
      await admin.disconnect();
    }
  };
  return {
    admin: () => kafka.admin(),
    producer: (o = {}) =>
      kafka.producer({
        idempotent: o.idempotent ?? true,
        maxInFlightRequests: o.transactionalId || (o.idempotent ?? true) ? 1 : undefined,
        transactionalId: o.transactionalId,
        // Transactions hold a chunk of an upload; a crashed API's open transaction is aborted
        // when the next producer with the same id starts, or after this timeout.
        transactionTimeout: 60_000,
        allowAutoTopicCreation: false,
        // Explicit, so kafkajs does not warn that its default changed in 2.0. Sluice sets
        // partitions itself where placement matters.
        createPartitioner: Partitioners.DefaultPartitioner,
      }),
    consumer: (config) => kafka.consumer(config),
    ensureTopics,
    deleteTopics: async (topics) => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        await admin.deleteTopics({ topics });
      } finally {
        await admin.disconnect();
      }
    },
  };
}
