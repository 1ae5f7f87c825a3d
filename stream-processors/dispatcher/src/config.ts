import type { ProviderKind } from '@sluice/providers';
import { CrashPoint } from '@sluice/errors';
import { tokenizerNames, type BucketLimits, type TokenizerName } from '@sluice/rate-limit';

export interface DispatcherConfig {
  kafkaBrokers: string[];
  redisUrl: string;
  schemaRegistryUrl: string;
  /** The lane: openai | azure | gemini | compatible (SLUICE_PROVIDER). */
  provider: ProviderKind;
  /**
   * Every key of the lane's pool, never logged: SLUICE_PROVIDER_KEYS, a JSON array of {"id",
   * "apiKey", "baseUrl"?} (baseUrl defaults to SLUICE_PROVIDER_BASE_URL), else the one key of
   * SLUICE_PROVIDER_API_KEY, named by SLUICE_PROVIDER_KEY_ID (default provider-default). The base
   * URL is OpenAI's or a compatible server's /v1, Azure's endpoint, or Gemini's base URL.
   */
  keys: ReadonlyArray<{ keyId: string; apiKey: string; baseUrl: string | undefined }>;
  /** Per model: {"gpt-4o-mini": {"requestsPerMinute": 500, "tokensPerMinute": 200000}} (SLUICE_MODEL_LIMITS). */
  modelLimits: Record<string, BucketLimits>;
  /**
   * The models the lane serves, from SLUICE_MODELS (the ingest API's JSON, provider → models;
   * `["*"]`: any): a lane record of a model neither its job's nor one of these is a dead letter.
   * Unset: the models of SLUICE_MODEL_LIMITS.
   */
  models: readonly string[];
  /**
   * The most calls in flight; below it, Little's law sizes them (pace × p99 latency × 1.5).
   * @default 2048 (SLUICE_DISPATCH_CONCURRENCY): at 512, a provider answering in 1 s held one
   * dispatcher to about 410 calls a second (bench:dispatch --latency-ms 1000: 417; 910 at 4096)
   */
  concurrency: number;
  /**
   * Counts prompt tokens for reservations (calibrated by reported usage): o200k_base, cl100k_base,
   * or chars (characters / 4, no tokenizer in memory). @default o200k_base (SLUICE_TOKENIZER)
   */
  tokenizer: TokenizerName;
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
  /**
   * At a high pace, one Redis call books this many ms of the pace's calls for this replica (a
   * lease, see RateLimiterOptions.leaseMs); 0: one Redis call per call. @default 25 (SLUICE_RATE_LEASE_MS)
   */
  rateLeaseMs: number;
  /** The fault suite's crash point (SLUICE_CRASH_POINT). */
  crash: CrashPoint | undefined;
}

export class DispatcherConfigError extends Error {}

const providers = ['openai', 'azure', 'gemini', 'compatible'] as const;

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, least = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < least)
    throw new DispatcherConfigError(`${name}=${raw}: give a whole number of at least ${least}`);
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

const keysExample =
  '[{"id": "east", "apiKey": "sk-...", "baseUrl": "https://east.example/v1"}, {"id": "west", "apiKey": "sk-..."}]';

/** SLUICE_PROVIDER_KEYS; errors name the entry, never a key. */
function poolKeys(raw: string, baseUrl: string | undefined): DispatcherConfig['keys'] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new DispatcherConfigError(`SLUICE_PROVIDER_KEYS is not JSON (${keysExample}): ${(e as Error).message}`);
  }
  if (!Array.isArray(v) || v.length === 0)
    throw new DispatcherConfigError(`SLUICE_PROVIDER_KEYS must be a non-empty JSON array: ${keysExample}`);
  const seen = new Set<string>();
  return v.map((entry: unknown, i) => {
    const e = (entry ?? {}) as { id?: unknown; apiKey?: unknown; baseUrl?: unknown };
    if (typeof e.id !== 'string' || e.id === '' || typeof e.apiKey !== 'string' || e.apiKey === '')
      throw new DispatcherConfigError(
        `SLUICE_PROVIDER_KEYS[${i}] needs a string "id" (names the key in buckets and logs) and a string "apiKey": ${keysExample}`,
      );
    if (e.baseUrl !== undefined && typeof e.baseUrl !== 'string')
      throw new DispatcherConfigError(`SLUICE_PROVIDER_KEYS[${i}] ("${e.id}"): "baseUrl" must be a string URL`);
    if (seen.has(e.id)) throw new DispatcherConfigError(`SLUICE_PROVIDER_KEYS[${i}]: the id "${e.id}" is used twice`);
    seen.add(e.id);
    return { keyId: e.id, apiKey: e.apiKey, baseUrl: (e.baseUrl as string | undefined) || baseUrl };
  });
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
  const lane = env['SLUICE_LANE'] || provider;
  let models: readonly string[] = Object.keys(modelLimits);
  if (env['SLUICE_MODELS']) {
    try {
      models = (JSON.parse(env['SLUICE_MODELS']) as Record<string, string[]>)[lane] ?? [];
    } catch (e) {
      throw new DispatcherConfigError(
        `SLUICE_MODELS is not JSON ({"${lane}": ["gpt-4o-mini"]}, as the ingest API takes it): ${(e as Error).message}`,
      );
    }
  }
  const tokenizer = (env['SLUICE_TOKENIZER'] || 'o200k_base') as TokenizerName;
  if (!tokenizerNames.includes(tokenizer))
    throw new DispatcherConfigError(
      `SLUICE_TOKENIZER=${tokenizer}: give one of ${tokenizerNames.join(', ')} (chars: characters / 4, no tokenizer loaded)`,
    );
  const baseUrl = env['SLUICE_PROVIDER_BASE_URL'] || undefined;
  const keys = env['SLUICE_PROVIDER_KEYS']
    ? poolKeys(env['SLUICE_PROVIDER_KEYS'], baseUrl)
    : [
        {
          keyId: env['SLUICE_PROVIDER_KEY_ID'] ?? `${provider}-default`,
          apiKey: required(
            env,
            'SLUICE_PROVIDER_API_KEY',
            "the provider's API key (or SLUICE_PROVIDER_KEYS for a pool)",
          ),
          baseUrl,
        },
      ];
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
    keys,
    modelLimits,
    models,
    concurrency: int(env, 'SLUICE_DISPATCH_CONCURRENCY', 2_048),
    tokenizer,
    callTimeoutMs: int(env, 'SLUICE_CALL_TIMEOUT_MS', 60_000),
    maxAttempts: int(env, 'SLUICE_MAX_ATTEMPTS', 6),
    lanePartitions: int(env, 'SLUICE_LANE_PARTITIONS', 12),
    consumerStallMs: int(env, 'SLUICE_CONSUMER_STALL_MS', 45_000),
    rateLeaseMs: int(env, 'SLUICE_RATE_LEASE_MS', 25, 0),
    lane,
    crash: crashPoint(env),
  });
}
