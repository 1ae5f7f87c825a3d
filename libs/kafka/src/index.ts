// Must stay the first imports: they replace or wrap kafkajs modules before kafkajs loads them.
import './linear-grouping.js';
import './forget-deleted-topics.js';
import { createRequire } from 'node:module';
import { topicReplication } from './config.js';
import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type ConfigResourceTypes,
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
  /**
   * Replicas of each topic Sluice creates (a spec may say otherwise). @default
   * SLUICE_TOPIC_REPLICATION_FACTOR, else 1 (the local single broker; 3 on GKE)
   */
  replicationFactor?: number;
  /**
   * `min.insync.replicas` of each topic Sluice creates: with producers' acks from all in-sync
   * replicas, a write needs this many copies. @default SLUICE_TOPIC_MIN_INSYNC_REPLICAS, else
   * one less than the replication factor (at least 1)
   */
  minInsyncReplicas?: number;
}

/** A Kafka setting that cannot work, said before anything is created with it. */
export class KafkaConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KafkaConfigError';
  }
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
  /**
   * The largest record batch a topic takes (its `max.message.bytes`, which defaults to the
   * broker's `message.max.bytes`), read from the broker once per topic.
   */
  maxMessageBytes(topic: string): Promise<number>;
  /**
   * Whether a topic exists, as the broker's metadata says. A topic seen once is taken to exist
   * (ask with `fresh` after a send says otherwise); one not seen is asked again after a second.
   */
  topicExists(topic: string, options?: { fresh?: boolean }): Promise<boolean>;
}

/** A record's topic does not exist: it cannot be written, however long the send is retried. */
export class TopicMissingError extends Error {
  constructor(readonly topic: string) {
    super(`topic ${topic} does not exist`);
    this.name = 'TopicMissingError';
  }
}

/**
 * Whether a kafkajs error, or one it wraps, may mean a topic does not exist: the broker says it
 * does not know the topic or partition, or kafkajs has no metadata for it (after a first refusal
 * it says that instead). Existence is then asked of the broker; this only says when to ask.
 */
export function unknownTopicError(err: unknown): boolean {
  for (
    let e = err as { type?: string; name?: string; cause?: unknown; originalError?: unknown } | undefined, depth = 0;
    e && depth < 5;
    depth++
  ) {
    if (e.type === 'UNKNOWN_TOPIC_OR_PARTITION' || e.name === 'KafkaJSMetadataNotLoaded') return true;
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return false;
}

/**
 * Settings of every topic Sluice creates, unless its spec says otherwise: a record batch of up to
 * 8 MiB, so that any row the API accepts (a line of up to 1 MiB, its prompt record, the same with
 * its attempt history on a delay topic, a completion of 16k tokens and its raw body) fits in one,
 * where the broker's default (`message.max.bytes`, 1 MiB) would refuse it.
 */
export const topicDefaults: Readonly<Record<string, string>> = Object.freeze({
  'max.message.bytes': String(8 * 1024 * 1024),
});

/** What a record costs in a batch beyond its key and value (Kafka's v2 record and batch headers). */
export const recordOverheadBytes = 80;

/** The bytes a message takes in a record batch, near enough to keep batches under a limit. */
export function messageBytes(m: Message): number {
  const size = (v: Message['value'] | Message['key']) =>
    v === null || v === undefined ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length;
  let headers = 0;
  for (const [k, v] of Object.entries(m.headers ?? {}))
    headers += Buffer.byteLength(k) + (Array.isArray(v) ? v.reduce((a, x) => a + size(x), 0) : size(v as Buffer));
  return size(m.key) + size(m.value) + headers + recordOverheadBytes;
}

/**
 * Splits messages into sends whose bytes stay under `maxBytes` in all (so under it in every
 * partition's batch too, whatever partitions they go to). A message over it alone gets a send of
 * its own: the broker's refusal is then that message's, not its neighbours'.
 */
export function splitByBytes<M extends Message>(messages: M[], maxBytes: number): M[][] {
  const out: M[][] = [];
  let current: M[] = [];
  let bytes = 0;
  for (const m of messages) {
    const b = messageBytes(m);
    if (current.length > 0 && bytes + b > maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += b;
  }
  if (current.length > 0) out.push(current);
  return out;
}

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
function logCreator(logger: Logger | undefined) {
  return () =>
    ({ level, log }: LogEntry) => {
      if (!logger) return;
      const { message, ...rest } = log;
      const routine = typeof rest['error'] === 'string' && retriableMessages.has(rest['error']);
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
  return retryUntilWritten(() => producer.send(record), record.topic, o);
}

async function retryUntilWritten(
  send: () => Promise<unknown>,
  topic: string,
  o: {
    running: () => boolean;
    log?: Logger;
    what: string;
    attemptMs?: number;
    /** Asked after each failure: true ends the retries with that failure. */
    stopOn?: (err: unknown) => Promise<boolean>;
  },
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
      await Promise.race([send(), deadline]);
      return;
    } catch (err) {
      if (!o.running()) throw err;
      if (o.stopOn && (await o.stopOn(err).catch(() => false))) throw err;
      o.log?.warn({ err, topic, attempt }, `${o.what} not written yet; retrying`);
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** (attempt - 1))));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Bytes of records one gathered request carries at most: under any topic's limit of at least 1 MiB. */
const gatheredBytes = 512 * 1024;

/**
 * Gathers the records sent within `lingerMs` of each other into one produce request, each written
 * until it is (as sendUntilWritten). kafkajs makes every send() a request of its own: one a call
 * at a thousand calls a second was a fifth of the dispatcher's CPU (encoding, a socket write and
 * an answer each). A request carries at most 512 KiB (a record larger goes alone) and 1,000
 * records; the promise of each record settles when its request is written.
 */
export class GatheringSender {
  private pending: Array<{ topic: string; message: Message; bytes: number; done: (err?: unknown) => void }> = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly producer: Producer,
    private readonly o: {
      running: () => boolean;
      log?: Logger;
      what: string;
      lingerMs?: number;
      /**
       * Asked, after a send fails on an unknown topic, whether each topic of the request exists:
       * the records of one that does not are refused with TopicMissingError and the rest are sent
       * again. Without it such a send is retried like any other (a topic being created).
       */
      topicExists?: (topic: string) => Promise<boolean>;
    },
  ) {}

  send(topic: string, message: Message): Promise<void> {
    const bytes = messageBytes(message);
    if (this.pending.length > 0 && this.bytes + bytes > gatheredBytes) this.flush();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ topic, message, bytes, done: (err) => (err === undefined ? resolve() : reject(err)) });
      this.bytes += bytes;
      if (this.pending.length >= 1_000 || this.bytes >= gatheredBytes) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.lingerMs ?? 2);
    });
  }

  /** Sends what is gathered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.bytes = 0;
    void this.write(batch);
  }

  private async write(batch: GatheringSender['pending']): Promise<void> {
    for (;;) {
      const byTopic = new Map<string, Message[]>();
      for (const r of batch) {
        const list = byTopic.get(r.topic);
        if (list) list.push(r.message);
        else byTopic.set(r.topic, [r.message]);
      }
      const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
      let missing: Set<string> | undefined;
      try {
        await retryUntilWritten(
          () => this.producer.sendBatch({ acks: -1, topicMessages }),
          topicMessages.length === 1 ? topicMessages[0]!.topic : `${topicMessages.length} topics`,
          {
            ...this.o,
            // A send refused for an unknown topic ends the retries if a topic is indeed missing.
            stopOn: this.o.topicExists
              ? async (err) => {
                  if (!unknownTopicError(err)) return false;
                  const exists = this.o.topicExists!;
                  const gone = (
                    await Promise.all([...byTopic.keys()].map(async (t) => ((await exists(t)) ? [] : [t])))
                  ).flat();
                  if (gone.length === 0) return false;
                  missing = new Set(gone);
                  return true;
                }
              : undefined,
          },
        );
        batch.forEach((r) => r.done());
        return;
      } catch (err) {
        if (!missing) {
          batch.forEach((r) => r.done(err ?? new Error('not written')));
          return;
        }
        const gone = missing;
        for (const r of batch) if (gone.has(r.topic)) r.done(new TopicMissingError(r.topic));
        batch = batch.filter((r) => !gone.has(r.topic));
        if (batch.length === 0) return;
      }
    }
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
