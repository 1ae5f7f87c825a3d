import type { ProviderKind } from '@sluice/providers';
import { ConfigError, Settings } from '@sluice/config';
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

export { ConfigError as DispatcherConfigError };

const providers = ['openai', 'azure', 'gemini', 'compatible'] as const;

const keysExample =
  '[{"id": "east", "apiKey": "sk-...", "baseUrl": "https://east.example/v1"}, {"id": "west", "apiKey": "sk-..."}]';

/** SLUICE_PROVIDER_KEYS; errors name the entry, never a key. */
function poolKeys(raw: string, baseUrl: string | undefined): DispatcherConfig['keys'] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new Error(`SLUICE_PROVIDER_KEYS is not JSON (${keysExample}): ${(e as Error).message}`);
  }
  if (!Array.isArray(v) || v.length === 0)
    throw new Error(`SLUICE_PROVIDER_KEYS must be a non-empty JSON array: ${keysExample}`);
  const seen = new Set<string>();
  return v.map((entry: unknown, i) => {
    const e = (entry ?? {}) as { id?: unknown; apiKey?: unknown; baseUrl?: unknown };
    if (typeof e.id !== 'string' || e.id === '' || typeof e.apiKey !== 'string' || e.apiKey === '')
      throw new Error(
        `SLUICE_PROVIDER_KEYS[${i}] needs a string "id" (names the key in buckets and logs) and a string "apiKey": ${keysExample}`,
      );
    if (e.baseUrl !== undefined && typeof e.baseUrl !== 'string')
      throw new Error(`SLUICE_PROVIDER_KEYS[${i}] ("${e.id}"): "baseUrl" must be a string URL`);
    if (seen.has(e.id)) throw new Error(`SLUICE_PROVIDER_KEYS[${i}]: the id "${e.id}" is used twice`);
    seen.add(e.id);
    return { keyId: e.id, apiKey: e.apiKey, baseUrl: (e.baseUrl as string | undefined) || baseUrl };
  });
}

/** The only reader of process.env for the dispatcher process; every bad setting is reported at once. */
export function loadDispatcherConfig(env: NodeJS.ProcessEnv = process.env): DispatcherConfig {
  const s = new Settings(env, 'dispatcher');
  const stack = 'run `npm run stack:up` and source .sluice/stack.env';
  const provider = s.required('SLUICE_PROVIDER', `the lane to serve, one of ${providers.join(', ')}`);
  if (provider && !(providers as readonly string[]).includes(provider))
    s.problem(`SLUICE_PROVIDER=${provider}: give one of ${providers.join(', ')}`);
  const modelLimits = s.json<Record<string, BucketLimits>>(
    'SLUICE_MODEL_LIMITS',
    {},
    '{"gpt-4o-mini": {"requestsPerMinute": 500, "tokensPerMinute": 200000}}',
  );
  const lane = env['SLUICE_LANE'] || provider;
  const byLane = s.json<Record<string, string[]> | undefined>(
    'SLUICE_MODELS',
    undefined,
    `{"${lane}": ["gpt-4o-mini"]}, as the ingest API takes it`,
  );
  const models: readonly string[] = byLane ? (byLane[lane] ?? []) : Object.keys(modelLimits);
  const tokenizer = (env['SLUICE_TOKENIZER'] || 'o200k_base') as TokenizerName;
  if (!tokenizerNames.includes(tokenizer))
    s.problem(
      `SLUICE_TOKENIZER=${tokenizer}: give one of ${tokenizerNames.join(', ')} (chars: characters / 4, no tokenizer loaded)`,
    );
  const baseUrl = s.text('SLUICE_PROVIDER_BASE_URL');
  const pool = s.text('SLUICE_PROVIDER_KEYS');
  const keys = pool
    ? s.parsed(() => poolKeys(pool, baseUrl), [])
    : [
        {
          keyId: env['SLUICE_PROVIDER_KEY_ID'] ?? `${provider}-default`,
          apiKey: s.required('SLUICE_PROVIDER_API_KEY', "the provider's API key (or SLUICE_PROVIDER_KEYS for a pool)"),
          baseUrl,
        },
      ];
  const config: DispatcherConfig = Object.freeze({
    kafkaBrokers: s.required('SLUICE_KAFKA_BROKERS', stack).split(','),
    redisUrl: s.required('SLUICE_REDIS_URL', stack),
    schemaRegistryUrl: s.required('SLUICE_SCHEMA_REGISTRY_URL', stack),
    provider: provider as DispatcherConfig['provider'],
    keys,
    modelLimits,
    models,
    concurrency: s.int('SLUICE_DISPATCH_CONCURRENCY', 2_048),
    tokenizer,
    callTimeoutMs: s.int('SLUICE_CALL_TIMEOUT_MS', 60_000),
    maxAttempts: s.int('SLUICE_MAX_ATTEMPTS', 6),
    lanePartitions: s.int('SLUICE_LANE_PARTITIONS', 12),
    consumerStallMs: s.int('SLUICE_CONSUMER_STALL_MS', 45_000),
    rateLeaseMs: s.int('SLUICE_RATE_LEASE_MS', 25, 0),
    lane,
    crash: s.parsed(() => CrashPoint.parse(env['SLUICE_CRASH_POINT']), undefined),
  });
  s.done();
  return config;
}
