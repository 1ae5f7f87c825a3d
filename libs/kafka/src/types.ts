import type { Admin, Consumer, ConsumerConfig, Producer } from 'kafkajs';

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
