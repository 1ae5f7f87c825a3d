import { resolve } from 'node:path';
import { CrashPoint } from '@sluice/errors';
import { parseTenantPolicies, TenantPolicyError, type TenantPolicies } from '@sluice/tenants';
import { defaultPrices, type PriceTable } from './manifest.js';

export interface SinkConfig {
  kafkaBrokers: string[];
  redisUrl: string;
  schemaRegistryUrl: string;
  /** GCS bucket for results (SLUICE_RESULTS_BUCKET); absent: the local directory. */
  bucket: string | undefined;
  /** The GCS emulator (SLUICE_GCS_ENDPOINT); absent: Google Cloud Storage. */
  gcsEndpoint: string | undefined;
  /** Results directory when no bucket is set (SLUICE_RESULTS_DIR). @default .sluice/results */
  localDir: string;
  /** Object name prefix (SLUICE_RESULTS_PREFIX). @default "" */
  prefix: string;
  /** SLUICE_PUBSUB_PROJECT; absent: no Pub/Sub announcements. */
  pubsubProject: string | undefined;
  /** PUBSUB_EMULATOR_HOST (the emulator; the topic is created when missing there). */
  pubsubEmulatorHost: string | undefined;
  /** Where jobs without a topic of their own are announced (SLUICE_PUBSUB_TOPIC). @default sluice-jobs-finished */
  pubsubTopic: string;
  /**
   * The platform's webhook secret (SLUICE_WEBHOOK_SECRET): each tenant's webhooks are signed with
   * a key derived from it (GET /v1/webhook-secret); never logged.
   */
  webhookSecret: string | undefined;
  /** What each tenant may do (SLUICE_TENANTS): here, whether its webhooks may reach private addresses. */
  tenantPolicies: TenantPolicies;
  /** @default 10000 (SLUICE_SINK_PART_RECORDS) */
  partRecords: number;
  /** @default 67108864 (SLUICE_SINK_PART_BYTES) */
  partBytes: number;
  /** @default 2000 (SLUICE_SINK_FLUSH_MS) */
  flushMs: number;
  /** A Kafka consumer with no fetch for this long is replaced. @default 45000 (SLUICE_CONSUMER_STALL_MS) */
  consumerStallMs: number;
  /** @default 21600000, 6 h (SLUICE_PIPELINE_TIMEOUT_MS) */
  pipelineTimeoutMs: number;
  /** @default 604800000, 7 days (SLUICE_RESULTS_RETENTION_MS) */
  retentionMs: number;
  /** How often the reconciler and the retention sweep run. @default 10000 (SLUICE_SINK_SWEEP_MS) */
  sweepMs: number;
  /** @default 256 (SLUICE_SINK_MAX_JOBS) */
  maxActiveJobs: number;
  /**
   * An open job's writer idle this long gives its slot to a job waiting for one (it waits in turn
   * itself). @default 60000 (SLUICE_SINK_IDLE_WRITER_MS)
   */
  idleWriterMs: number;
  /** Only these tenants' jobs (SLUICE_SINK_TENANTS, comma-separated). @default all tenants */
  tenants: string[] | null;
  /** The fault suite's crash point (SLUICE_CRASH_POINT). */
  crash: CrashPoint | undefined;
  /** USD per million tokens by model (SLUICE_PRICES, JSON), merged over the defaults. */
  prices: PriceTable;
}

export class SinkConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new SinkConfigError(`${name}=${raw}: give a whole number of at least 1`);
  return v;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name];
  if (!v) throw new SinkConfigError(`${name} is not set: run \`npm run stack:up\` and source .sluice/stack.env`);
  return v;
}

/** The only reader of process.env for the sink process. */
export function loadSinkConfig(env: NodeJS.ProcessEnv = process.env): SinkConfig {
  let prices = defaultPrices;
  if (env['SLUICE_PRICES']) {
    try {
      prices = { ...defaultPrices, ...(JSON.parse(env['SLUICE_PRICES']) as PriceTable) };
    } catch (e) {
      throw new SinkConfigError(
        `SLUICE_PRICES is not JSON ({"gpt-4o-mini": {"input": 0.15, "output": 0.6}}): ${(e as Error).message}`,
      );
    }
  }
  return Object.freeze({
    kafkaBrokers: required(env, 'SLUICE_KAFKA_BROKERS').split(','),
    redisUrl: required(env, 'SLUICE_REDIS_URL'),
    schemaRegistryUrl: required(env, 'SLUICE_SCHEMA_REGISTRY_URL'),
    bucket: env['SLUICE_RESULTS_BUCKET'] || undefined,
    gcsEndpoint: env['SLUICE_GCS_ENDPOINT'] || undefined,
    localDir: resolve(env['SLUICE_RESULTS_DIR'] || '.sluice/results'),
    prefix: env['SLUICE_RESULTS_PREFIX'] ?? '',
    pubsubProject: env['SLUICE_PUBSUB_PROJECT'] || undefined,
    pubsubEmulatorHost: env['PUBSUB_EMULATOR_HOST'] || undefined,
    pubsubTopic: env['SLUICE_PUBSUB_TOPIC'] || 'sluice-jobs-finished',
    webhookSecret: env['SLUICE_WEBHOOK_SECRET'] || undefined,
    tenantPolicies: (() => {
      try {
        return parseTenantPolicies(env['SLUICE_TENANTS']);
      } catch (e) {
        if (e instanceof TenantPolicyError) throw new SinkConfigError(e.message);
        throw e;
      }
    })(),
    partRecords: int(env, 'SLUICE_SINK_PART_RECORDS', 10_000),
    partBytes: int(env, 'SLUICE_SINK_PART_BYTES', 64 * 1024 * 1024),
    flushMs: int(env, 'SLUICE_SINK_FLUSH_MS', 2_000),
    consumerStallMs: int(env, 'SLUICE_CONSUMER_STALL_MS', 45_000),
    pipelineTimeoutMs: int(env, 'SLUICE_PIPELINE_TIMEOUT_MS', 6 * 3_600_000),
    retentionMs: int(env, 'SLUICE_RESULTS_RETENTION_MS', 7 * 86_400_000),
    sweepMs: int(env, 'SLUICE_SINK_SWEEP_MS', 10_000),
    maxActiveJobs: int(env, 'SLUICE_SINK_MAX_JOBS', 256),
    idleWriterMs: int(env, 'SLUICE_SINK_IDLE_WRITER_MS', 60_000),
    tenants: env['SLUICE_SINK_TENANTS'] ? env['SLUICE_SINK_TENANTS'].split(',').map((t) => t.trim()) : null,
    prices,
    crash: (() => {
      try {
        return CrashPoint.parse(env['SLUICE_CRASH_POINT']);
      } catch (e) {
        throw new SinkConfigError((e as Error).message);
      }
    })(),
  });
}
