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
  type ProducerRecord,
  type Transaction,
} from 'kafkajs';

export type { Admin, Consumer, Message, Producer, ProducerRecord, Transaction };
export { replaceHungConsumer, watchConsumer, type ConsumerWatchOptions } from './watchdog.js';

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
  /**
   * A transactional producer (`transactionalId`), or an at-least-once one: acks from all in-sync
   * replicas, retried, never kafkajs's idempotence (ADR 0005: after a failed request it can
   * acknowledge a concurrent send it never wrote). `ordered` keeps one request in flight, so
   * retries cannot reorder records (job events); otherwise many are in flight.
   */
  producer(options?: { transactionalId?: string; ordered?: boolean }): Producer;
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

/** How long one send may wait for Kafka before it is sent again: twice the request timeout. */
const sendAttemptMs = 60_000;

/**
 * Sends `record` until it is written, with backoff (0.25 s doubling to 5 s), for as long as
 * `running()` says so. kafkajs gives up on a send after its own few retries (a reset connection:
 * "Closed connection", "write after end"); a result already paid for must not be dropped then.
 * Throws the last error once `running()` is false.
 */
export async function sendUntilWritten(
  producer: Producer,
  record: ProducerRecord,
  o: { running: () => boolean; log?: Logger; what: string; attemptMs?: number },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let timer: NodeJS.Timeout | undefined;
    try {
      // kafkajs bounds each request, but a send can still wait on a connection that never answers
      // nor fails; after `attemptMs` it is sent again (readers deduplicate a late first copy).
      const ms = o.attemptMs ?? sendAttemptMs;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Kafka within ${ms} ms`)), ms);
      });
      await Promise.race([producer.send(record), deadline]);
      return;
    } catch (err) {
      if (!o.running()) throw err;
      o.log?.warn({ err, topic: record.topic, attempt }, `${o.what} not written yet; retrying`);
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** (attempt - 1))));
    } finally {
      clearTimeout(timer);
    }
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
      if (missing.length === 0)
        return await waitForLeaders(
          admin,
          specs.map((s) => s.topic),
        );
      const topics: ITopicConfig[] = missing.map((s) => ({
        topic: s.topic,
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor ?? 1,
        configEntries: Object.entries(s.config ?? {}).map(([name, value]) => ({ name, value })),
      }));
      // kafkajs's own wait for leaders gives up at the first metadata answer that does not know
      // the topic yet ("This server does not host this topic-partition"), which a broker that has
      // just started gives for a while after the create; and when another replica created a topic
      // between our list and create, kafkajs returns at once without waiting. So: our own wait.
      await admin.createTopics({ topics, waitForLeaders: false });
      await waitForLeaders(
        admin,
        specs.map((s) => s.topic),
      );
    } finally {
      await admin.disconnect();
    }
  };
  return {
    admin: () => kafka.admin(),
    producer: (o = {}) =>
      kafka.producer({
        // Transactions need idempotence; inside one, Sluice's sends are sequential and a failure
        // aborts the transaction, so a reused sequence number cannot hide a record there.
        idempotent: !!o.transactionalId,
        maxInFlightRequests: o.transactionalId || o.ordered ? 1 : undefined,
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
