import { CrashPoint } from '@sluice/errors';
import type { BucketLimits } from '@sluice/rate-limit';

export interface DispatcherConfig {
  kafkaBrokers: string[];
  redisUrl: string;
  schemaRegistryUrl: string;
  /** The lane: openai | azure | gemini | compatible (SLUICE_PROVIDER). */
  provider: 'openai' | 'azure' | 'gemini' | 'compatible';
  /** The provider API key (SLUICE_PROVIDER_API_KEY); never logged. */
  apiKey: string;
  /** Names the key in buckets and logs (SLUICE_PROVIDER_KEY_ID). @default provider-default */
  keyId: string;
  /** OpenAI / compatible base URL, Azure endpoint, Gemini base URL (SLUICE_PROVIDER_BASE_URL). */
  baseUrl: string | undefined;
  /** Per model: {"gpt-4o-mini": {"requestsPerMinute": 500, "tokensPerMinute": 200000}} (SLUICE_MODEL_LIMITS). */
  modelLimits: Record<string, BucketLimits>;
  /**
   * The most calls in flight; below it, Little's law sizes them (pace × p99 latency × 1.5).
   * @default 512 (SLUICE_DISPATCH_CONCURRENCY)
   */
  concurrency: number;
  /** @default 60000 (SLUICE_CALL_TIMEOUT_MS) */
  callTimeoutMs: number;
  /** @default 6 (SLUICE_MAX_ATTEMPTS) */
  maxAttempts: number;
  /** A lane consumer with no fetch for this long is replaced. @default 45000 (SLUICE_CONSUMER_STALL_MS) */
  consumerStallMs: number;
  /** @default 12 (SLUICE_LANE_PARTITIONS, as the ingest API) */
  lanePartitions: number;
  /** The lane topic's provider name (SLUICE_LANE), when it differs from the API it calls. @default provider */
  lane: string;
  /** The fault suite's crash point (SLUICE_CRASH_POINT). */
  crash: CrashPoint | undefined;
}

export class DispatcherConfigError extends Error {}

const providers = ['openai', 'azure', 'gemini', 'compatible'] as const;

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1)
    throw new DispatcherConfigError(`${name}=${raw}: give a whole number of at least 1`);
  return v;
}

function required(env: NodeJS.ProcessEnv, name: string, hint: string): string {
  const v = env[name];
  if (!v) throw new DispatcherConfigError(`${name} is not set: ${hint}`);
  return v;
}

function crashPoint(env: NodeJS.ProcessEnv): CrashPoint | undefined {
  try {
    return CrashPoint.parse(env['SLUICE_CRASH_POINT']);
  } catch (e) {
    throw new DispatcherConfigError((e as Error).message);
  }
}

/** The only reader of process.env for the dispatcher process. */
export function loadDispatcherConfig(env: NodeJS.ProcessEnv = process.env): DispatcherConfig {
  const provider = required(env, 'SLUICE_PROVIDER', `the lane to serve, one of ${providers.join(', ')}`);
  if (!(providers as readonly string[]).includes(provider)) {
    throw new DispatcherConfigError(`SLUICE_PROVIDER=${provider}: give one of ${providers.join(', ')}`);
  }
  let modelLimits: Record<string, BucketLimits> = {};
  if (env['SLUICE_MODEL_LIMITS']) {
    try {
      modelLimits = JSON.parse(env['SLUICE_MODEL_LIMITS']) as Record<string, BucketLimits>;
    } catch (e) {
      throw new DispatcherConfigError(
        `SLUICE_MODEL_LIMITS is not JSON ({"gpt-4o-mini": {"requestsPerMinute": 500, "tokensPerMinute": 200000}}): ${(e as Error).message}`,
      );
    }
  }
  return Object.freeze({
    kafkaBrokers: required(env, 'SLUICE_KAFKA_BROKERS', 'run `npm run stack:up` and source .sluice/stack.env').split(
      ',',
    ),
    redisUrl: required(env, 'SLUICE_REDIS_URL', 'run `npm run stack:up` and source .sluice/stack.env'),
    schemaRegistryUrl: required(
      env,
      'SLUICE_SCHEMA_REGISTRY_URL',
      'run `npm run stack:up` and source .sluice/stack.env',
    ),
    provider: provider as DispatcherConfig['provider'],
    apiKey: required(env, 'SLUICE_PROVIDER_API_KEY', "the provider's API key"),
    keyId: env['SLUICE_PROVIDER_KEY_ID'] ?? `${provider}-default`,
    baseUrl: env['SLUICE_PROVIDER_BASE_URL'] || undefined,
    modelLimits,
    concurrency: int(env, 'SLUICE_DISPATCH_CONCURRENCY', 512),
    callTimeoutMs: int(env, 'SLUICE_CALL_TIMEOUT_MS', 60_000),
    maxAttempts: int(env, 'SLUICE_MAX_ATTEMPTS', 6),
    lanePartitions: int(env, 'SLUICE_LANE_PARTITIONS', 12),
    consumerStallMs: int(env, 'SLUICE_CONSUMER_STALL_MS', 45_000),
    lane: env['SLUICE_LANE'] || provider,
    crash: crashPoint(env),
  });
}
