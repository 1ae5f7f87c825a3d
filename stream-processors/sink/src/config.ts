import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { CrashPoint } from '@sluice/errors';
import { ConfigError, Settings } from '@sluice/config';
import { parseTenantPolicies, type TenantPolicies } from '@sluice/tenants';
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
  /** @default 64 (SLUICE_SINK_ROLLUP_PARTS) */
  rollupParts: number;
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
  /**
   * The consumer group over sluice.jobs (SLUICE_SINK_GROUP). @default "sluice-sink", and for a sink
   * of some tenants only "sluice-sink.<digest of those tenants>": a sink of other tenants in the same
   * group would hold partitions whose jobs it skips, and no sink would write them.
   */
  groupId: string;
  /** The fault suite's crash point (SLUICE_CRASH_POINT). */
  crash: CrashPoint | undefined;
  /** USD per million tokens by model (SLUICE_PRICES, JSON), merged over the defaults. */
  prices: PriceTable;
}

export { ConfigError as SinkConfigError };

/** The only reader of process.env for the sink process; every bad setting is reported at once. */
/** The sink's group over sluice.jobs: one for all tenants, one per set of tenants. */
export function sinkGroup(tenants: string[] | null): string {
  if (!tenants || tenants.length === 0) return 'sluice-sink';
  const digest = createHash('sha256')
    .update([...new Set(tenants)].sort().join(','))
    .digest('hex')
    .slice(0, 12);
  return `sluice-sink.${digest}`;
}

export function loadSinkConfig(env: NodeJS.ProcessEnv = process.env): SinkConfig {
  const s = new Settings(env, 'sink');
  const tenants = env['SLUICE_SINK_TENANTS']
    ? env['SLUICE_SINK_TENANTS']
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean)
    : null;
  const prices = {
    ...defaultPrices,
    ...s.json<PriceTable>('SLUICE_PRICES', {}, '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}'),
  };
  const config: SinkConfig = Object.freeze({
    kafkaBrokers: s.required('SLUICE_KAFKA_BROKERS').split(','),
    redisUrl: s.required('SLUICE_REDIS_URL'),
    schemaRegistryUrl: s.required('SLUICE_SCHEMA_REGISTRY_URL'),
    bucket: s.text('SLUICE_RESULTS_BUCKET'),
    gcsEndpoint: s.text('SLUICE_GCS_ENDPOINT'),
    localDir: resolve(env['SLUICE_RESULTS_DIR'] || '.sluice/results'),
    prefix: env['SLUICE_RESULTS_PREFIX'] ?? '',
    pubsubProject: s.text('SLUICE_PUBSUB_PROJECT'),
    pubsubEmulatorHost: s.text('PUBSUB_EMULATOR_HOST'),
    pubsubTopic: env['SLUICE_PUBSUB_TOPIC'] || 'sluice-jobs-finished',
    webhookSecret: s.text('SLUICE_WEBHOOK_SECRET'),
    tenantPolicies: s.parsed<TenantPolicies>(
      () => parseTenantPolicies(env['SLUICE_TENANTS']),
      parseTenantPolicies(undefined),
    ),
    partRecords: s.int('SLUICE_SINK_PART_RECORDS', 10_000),
    partBytes: s.int('SLUICE_SINK_PART_BYTES', 64 * 1024 * 1024),
    flushMs: s.int('SLUICE_SINK_FLUSH_MS', 2_000),
    rollupParts: s.int('SLUICE_SINK_ROLLUP_PARTS', 64),
    consumerStallMs: s.int('SLUICE_CONSUMER_STALL_MS', 45_000),
    pipelineTimeoutMs: s.int('SLUICE_PIPELINE_TIMEOUT_MS', 6 * 3_600_000),
    retentionMs: s.int('SLUICE_RESULTS_RETENTION_MS', 7 * 86_400_000),
    sweepMs: s.int('SLUICE_SINK_SWEEP_MS', 10_000),
    maxActiveJobs: s.int('SLUICE_SINK_MAX_JOBS', 256),
    idleWriterMs: s.int('SLUICE_SINK_IDLE_WRITER_MS', 60_000),
    tenants,
    groupId: s.text('SLUICE_SINK_GROUP') ?? sinkGroup(tenants),
    prices,
    crash: s.parsed(() => CrashPoint.parse(env['SLUICE_CRASH_POINT']), undefined),
  });
  s.done();
  return config;
}
