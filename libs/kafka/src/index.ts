// Must stay the first imports: they replace or wrap kafkajs modules before kafkajs loads them.
import './linear-grouping.js';
import './forget-deleted-topics.js';
import { createRequire } from 'node:module';
import { topicReplication } from './config.js';
import { GatheringSender, messageBytes, recordOverheadBytes, sendUntilWritten, splitByBytes } from './send.js';
import {
  KafkaConfigError,
  TopicMissingError,
  unknownTopicError,
  type KafkaClientOptions,
  type Logger,
  type SluiceKafka,
  type TopicSpec,
} from './types.js';
import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type ConfigResourceTypes,
  type Consumer,
  type EachBatchPayload,
  type ITopicConfig,
  type KafkaMessage,
  type LogEntry,
  type Message,
  type Producer,
  type ProducerRecord,
  type Transaction,
} from 'kafkajs';

export type { Admin, Consumer, EachBatchPayload, KafkaMessage, Message, Producer, ProducerRecord, Transaction };
export {
  ConsumerSupervisor,
  replaceHungConsumer,
  watchConsumer,
  type ConsumerWatchOptions,
  type SuperviseOptions,
} from './watchdog.js';
export { GatheringSender, messageBytes, recordOverheadBytes, sendUntilWritten, splitByBytes };
export { KafkaConfigError, TopicMissingError, unknownTopicError };
export type { KafkaClientOptions, Logger, SluiceKafka, TopicSpec };

/**
 * Settings of every topic Sluice creates, unless its spec says otherwise: a record batch of up to
 * 8 MiB, so that any row the API accepts (a line of up to 1 MiB, its prompt record, the same with
 * its attempt history on a delay topic, a completion of 16k tokens and its raw body) fits in one,
 * where the broker's default (`message.max.bytes`, 1 MiB) would refuse it.
 */
export const topicDefaults: Readonly<Record<string, string>> = Object.freeze({
  'max.message.bytes': String(8 * 1024 * 1024),
});

/**
 * The messages of the broker's retriable errors (a coordinator loading, a leader moving, a topic
 * just created): kafkajs logs a response that carries one at error level, and then retries it.
 */
const retriableMessages = new Set(
  (
    createRequire(import.meta.url)('kafkajs/src/protocol/error') as {
      errorCodes: Array<{ message: string; retriable: boolean }>;
    }
  ).errorCodes
    .filter((e) => e.retriable)
    .map((e) => e.message),
);

/**
 * Bridges kafkajs's log calls to Sluice's logger, at warn and above unless debugging. A response
 * with a retriable error is kafkajs's routine (it retries; Sluice logs what is still failing
 * after the retries): debug, not error, so that a broker starting up does not read as a failure.
 */
export function logCreator(logger: Logger | undefined) {
  return () =>
    ({ level, log }: LogEntry) => {
      if (!logger) return;
      const { message, ...rest } = log;
      // The error is a response's `error` field, or, for a send kafkajs's retrier tries again, the
      // end of its message ("Failed to send messages: <error>").
      const retried = typeof rest['retryCount'] === 'number' ? /^Failed to send messages: (.*)$/.exec(message) : null;
      const error = typeof rest['error'] === 'string' ? rest['error'] : retried?.[1];
      const routine = error !== undefined && retriableMessages.has(error);
      if (routine) logger.debug(rest, `kafka: ${message}`);
      else if (level === logLevel.ERROR) logger.error(rest, `kafka: ${message}`);
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
  const replication = topicReplication(options);
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
        replicationFactor: s.replicationFactor ?? replication.replicationFactor,
        configEntries: Object.entries({
          ...topicDefaults,
          'min.insync.replicas': String(Math.min(replication.minInsyncReplicas, s.replicationFactor ?? Infinity)),
          ...s.config,
        }).map(([name, value]) => ({ name, value })),
      }));
      // kafkajs's own wait for leaders gives up at the first metadata answer that does not know
      // the topic yet ("This server does not host this topic-partition"), which a broker that has
      // just started gives for a while after the create; and when another replica created a topic
      // between our list and create, kafkajs returns at once without waiting. So: our own wait.
      await admin.createTopics({ topics, waitForLeaders: false }).catch((err: unknown) => {
        const e = err as { type?: string; errors?: Array<{ type?: string; message?: string }>; message?: string };
        const invalid = [e, ...(e.errors ?? [])].find((x) => x.type === 'INVALID_REPLICATION_FACTOR');
        if (!invalid) throw err;
        throw new KafkaConfigError(
          `cannot create ${topics.map((t) => t.topic).join(', ')} with ${replication.replicationFactor} replicas: ` +
            `${invalid.message ?? 'more than the cluster has brokers'}. Set SLUICE_TOPIC_REPLICATION_FACTOR to at ` +
            'most the number of brokers (1 on the local stack, 3 on GKE)',
        );
      });
      await waitForLeaders(
        admin,
        specs.map((s) => s.topic),
      );
    } finally {
      await admin.disconnect();
    }
  };
  const maxBytes = new Map<string, Promise<number>>();
  const maxMessageBytes = (topic: string): Promise<number> => {
    let p = maxBytes.get(topic);
    if (!p) {
      p = (async () => {
        const admin = kafka.admin();
        await admin.connect();
        try {
          const r = await admin.describeConfigs({
            includeSynonyms: false,
            // ConfigResourceTypes.TOPIC: Node's ESM import of kafkajs (CommonJS) does not see that export.
            resources: [{ type: 2 as ConfigResourceTypes, name: topic, configNames: ['max.message.bytes'] }],
          });
          const v = Number(
            r.resources[0]?.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue,
          );
          if (!Number.isFinite(v) || v <= 0) throw new Error(`topic ${topic} states no max.message.bytes`);
          return v;
        } finally {
          await admin.disconnect();
        }
      })();
      maxBytes.set(topic, p);
      p.catch(() => maxBytes.delete(topic));
    }
    return p;
  };
  // Existence is asked rarely (a topic first seen, a send refused): an admin client per question.
  const known = new Set<string>();
  const unknownAt = new Map<string, number>();
  const topicExists = async (topic: string, o: { fresh?: boolean } = {}): Promise<boolean> => {
    if (!o.fresh && known.has(topic)) return true;
    const askedAt = unknownAt.get(topic);
    if (!o.fresh && askedAt !== undefined && Date.now() - askedAt < 1_000) return false;
    const admin = kafka.admin();
    await admin.connect();
    let topics: Set<string>;
    try {
      topics = new Set(await admin.listTopics());
    } finally {
      await admin.disconnect();
    }
    for (const t of topics) known.add(t);
    if (topics.has(topic)) {
      unknownAt.delete(topic);
      return true;
    }
    known.delete(topic);
    unknownAt.set(topic, Date.now());
    return false;
  };
  return {
    maxMessageBytes,
    topicExists,
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

export { deadLetterSpec, DeadLetters, type DeadLetter, type DeadLetterReason } from './dead-letter.js';
export {
  deadLetterHeaders,
  deadLetterTopic,
  delayTiers,
  headerText,
  jobsTopic,
  jobsTopicSpec,
  laneProvider,
  laneTopic,
  promptHeaders,
  promptId,
  resultsTopic,
  tierFor,
  tierTopics,
  topicPrefix,
} from './contract.js';
export { topicReplication };
