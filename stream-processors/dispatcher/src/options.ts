import type { SluiceKafka, Logger } from '@sluice/kafka';
import type { ProviderAdapter } from '@sluice/providers';
import type { BucketLimits, RateLimiter, TokenCounter } from '@sluice/rate-limit';
import type { CrashPoint } from '@sluice/errors';
import type { SchemaCodecs } from '@sluice/schemas';
import type { Redis } from 'ioredis';
import type { OutageBreakerOptions } from './breaker.js';
import type { PoolKey } from './types.js';

export interface DispatcherOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  redis: Redis;
  limiter: RateLimiter;
  /** The lane: prompts come from sluice.requests.<provider>. */
  provider: string;
  adapter?: ProviderAdapter;
  /** Names the API key in bucket names and logs; never the key itself. */
  keyId?: string;
  /**
   * Several API keys for the lane's models, pooled: each has buckets and learned limits of its
   * own, and a call takes the next key in turn whose bucket admits it. Instead of adapter + keyId.
   */
  keys?: PoolKey[];
  /** Limits per model; a model without limits is not rate-limited here. */
  limits: (model: string) => BucketLimits;
  /**
   * Models the lane serves besides each job's own ('*': any), as SLUICE_MODELS names them for the
   * lane; a lane record of another model is a dead letter. @default none (each job's model only)
   */
  models?: readonly string[];
  /** Calls in flight per process, across partitions. @default 64 */
  concurrency?: number;
  /** @default 60000 */
  callTimeoutMs?: number;
  /** Provider calls per prompt before it ends in an error. @default 6 */
  maxAttempts?: number;
  /** Completion budget assumed for prompts without max_tokens. @default 1024 */
  defaultMaxTokens?: number;
  /**
   * Counts a prompt's tokens for its reservation, calibrated by the usage answers report.
   * @default charsCounter (characters / 4; main.ts loads the tokenizer SLUICE_TOKENIZER names)
   */
  tokenCounter?: TokenCounter;
  /** @default sluice-dispatcher-<provider> */
  groupId?: string;
  /** Partitions of the lane topic if this process is the first to create it. @default 12 */
  lanePartitions?: number;
  /**
   * The consumer's session timeout; calls may run longer (heartbeats go on). Short, so that a
   * replica that dies is replaced quickly. @default 10000
   */
  sessionTimeoutMs?: number;
  /**
   * On stop, how long calls in flight may finish before the group is left (see stop()); the
   * prompts of calls still running then are read again by the next owner. @default 2000
   */
  handBackMs?: number;
  /** A lane consumer with no fetch for this long is replaced (kafkajs can hang after resets). @default 45000 */
  consumerStallMs?: number;
  /** A 429 asking to wait longer than this parks the lane (the key is quota-blocked). @default 30000 */
  parkAfterMs?: number;
  /**
   * A model's pace under half of its stated limit for this long without a 429 is reported: a
   * warning, and the lane's held-back note that job views show. @default 60000
   */
  heldBackAfterMs?: number;
  /** When the lane pauses for a provider outage (see OutageBreaker for the defaults). */
  breaker?: OutageBreakerOptions;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash?: CrashPoint;
  log: Logger;
}
