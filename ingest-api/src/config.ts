import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { ConfigError, Settings } from '@sluice/config';
import { parseTenantPolicies, type TenantPolicies } from '@sluice/tenants';

/** The providers Sluice routes to and the models each accepts (overridable: SLUICE_MODELS). */
export const defaultModels: Record<string, string[]> = {
  openai: ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'o4-mini'],
  azure: ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1'],
  gemini: ['gemini-2.0-flash', 'gemini-2.5-flash', 'gemini-2.5-pro'],
  compatible: ['*'],
};

export interface IngestConfig {
  /** @default 8080 (SLUICE_INGEST_PORT) */
  port: number;
  /** @default 127.0.0.1 (SLUICE_INGEST_HOST) */
  host: string;
  kafkaBrokers: string[];
  redisUrl: string;
  schemaRegistryUrl: string;
  /** sha256(api key) hex → tenant. SLUICE_API_KEYS: "tenant:sha256hex,tenant2:sha256hex". */
  apiKeyHashes: ReadonlyMap<string, string>;
  /** What each tenant may do: topics, webhook addresses, quotas (SLUICE_TENANTS, docs/tenants.md). */
  tenants: TenantPolicies;
  /**
   * The platform's webhook secret (SLUICE_WEBHOOK_SECRET, the sink's too): each tenant's signing
   * key is derived from it and served by GET /v1/webhook-secret. Absent: no webhooks.
   */
  webhookSecret: string | undefined;
  /** Provider → accepted models; '*' accepts any. */
  models: Readonly<Record<string, string[]>>;
  /** Partitions of each lane topic sluice.requests.<provider>. @default 12 */
  lanePartitions: number;
  /** Partitions of each job's results topic. @default 1 */
  resultsPartitions: number;
  /** Rows per Kafka transaction of an upload. @default 5000 */
  chunkRows: number;
  /** Rows of an upload's first transaction; each next one twice as many, up to chunkRows. @default 100 */
  firstChunkRows: number;
  /** Bytes of prompt records per Kafka transaction of an upload, at most (about). @default 16 MiB */
  chunkBytes: number;
  /** Largest upload. @default 4 GiB */
  maxUploadBytes: number;
  /** Largest line / element / record. @default 1 MiB */
  maxLineBytes: number;
  /** @default 64 */
  maxFields: number;
  /** @default 256 */
  maxMessages: number;
  /** Largest JSON body of other requests. @default 1 MiB */
  maxJsonBodyBytes: number;
  /** How long an interrupted upload keeps its job locked. @default 30000 */
  uploadLockMs: number;
  /**
   * A job left open (never sealed) with no change for this long is cancelled as expired.
   * @default 604800000, 7 days (SLUICE_OPEN_JOB_TTL_MS)
   */
  openJobTtlMs: number;
  /** Where the sink writes results, read by GET /v1/jobs/{id}/results (the same settings as the sink's). */
  results: {
    /** SLUICE_RESULTS_BUCKET; absent: the local directory. */
    bucket: string | undefined;
    /** SLUICE_GCS_ENDPOINT, the emulator. */
    gcsEndpoint: string | undefined;
    /** SLUICE_RESULTS_DIR. @default .sluice/results */
    localDir: string;
    /** SLUICE_RESULTS_PREFIX. @default "" */
    prefix: string;
    /** SLUICE_GCS_CREDENTIALS_FILE: a service-account key for signing URLs off GCP. */
    credentialsFile: string | undefined;
    /** SLUICE_PUBSUB_PROJECT, the GCP project. */
    projectId: string | undefined;
    /** How long a signed URL works (SLUICE_SIGNED_URL_TTL_MS). @default 3600000 */
    signedUrlTtlMs: number;
  };
}

export { ConfigError };

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function parseApiKeys(raw: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [tenant, hash] = entry.split(':');
    if (!tenant || !hash || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new ConfigError('ingest API', [
        `SLUICE_API_KEYS entry "${entry}" is not tenant:sha256hex (hash keys with: echo -n KEY | sha256sum)`,
      ]);
    }
    map.set(hash, tenant);
  }
  return map;
}

/** The only reader of process.env for the ingest API; every bad setting is reported at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): IngestConfig {
  const s = new Settings(env, 'ingest API');
  const config: IngestConfig = Object.freeze({
    tenants: s.parsed<TenantPolicies>(() => parseTenantPolicies(env['SLUICE_TENANTS']), parseTenantPolicies(undefined)),
    webhookSecret: s.text('SLUICE_WEBHOOK_SECRET'),
    port: s.int('SLUICE_INGEST_PORT', 8080, 0),
    host: env['SLUICE_INGEST_HOST'] ?? '127.0.0.1',
    kafkaBrokers: s.required('SLUICE_KAFKA_BROKERS').split(','),
    redisUrl: s.required('SLUICE_REDIS_URL'),
    schemaRegistryUrl: s.required('SLUICE_SCHEMA_REGISTRY_URL'),
    apiKeyHashes: s.parsed(() => parseApiKeys(env['SLUICE_API_KEYS'] ?? ''), new Map<string, string>()),
    models: s.json('SLUICE_MODELS', defaultModels, '{"openai": ["gpt-4o-mini"], ...}'),
    lanePartitions: s.int('SLUICE_LANE_PARTITIONS', 12),
    resultsPartitions: s.int('SLUICE_RESULTS_PARTITIONS', 1),
    chunkRows: s.int('SLUICE_UPLOAD_CHUNK_ROWS', 5_000),
    firstChunkRows: s.int('SLUICE_UPLOAD_FIRST_CHUNK_ROWS', 100),
    chunkBytes: s.int('SLUICE_UPLOAD_CHUNK_BYTES', 16 * 1024 * 1024),
    maxUploadBytes: s.int('SLUICE_MAX_UPLOAD_BYTES', 4 * 1024 ** 3),
    maxLineBytes: s.int('SLUICE_MAX_LINE_BYTES', 1024 ** 2),
    maxFields: s.int('SLUICE_MAX_FIELDS', 64),
    maxMessages: s.int('SLUICE_MAX_MESSAGES', 256),
    maxJsonBodyBytes: s.int('SLUICE_MAX_JSON_BODY_BYTES', 1024 ** 2),
    uploadLockMs: s.int('SLUICE_UPLOAD_LOCK_MS', 30_000),
    openJobTtlMs: s.int('SLUICE_OPEN_JOB_TTL_MS', 7 * 86_400_000),
    results: Object.freeze({
      bucket: env['SLUICE_RESULTS_BUCKET'] || undefined,
      gcsEndpoint: env['SLUICE_GCS_ENDPOINT'] || undefined,
      localDir: resolve(env['SLUICE_RESULTS_DIR'] || '.sluice/results'),
      prefix: env['SLUICE_RESULTS_PREFIX'] ?? '',
      credentialsFile: env['SLUICE_GCS_CREDENTIALS_FILE'] || undefined,
      projectId: env['SLUICE_PUBSUB_PROJECT'] || undefined,
      signedUrlTtlMs: s.int('SLUICE_SIGNED_URL_TTL_MS', 3_600_000),
    }),
  });
  s.done();
  return config;
}
