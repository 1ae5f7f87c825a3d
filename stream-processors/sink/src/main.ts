import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createLogger } from '@sluice/logging';
import { isMainModule, runRole, type RunningRole } from '@sluice/errors';
import { createAnnouncer } from '@sluice/announcer';
import { createKafka } from '@sluice/kafka';
import { openObjectStore } from '@sluice/object-store';
import { createSchemaCodecs } from '@sluice/schemas';
import { loadSinkConfig, type SinkConfig } from './config.js';
import { Sink } from './sink.js';

export async function createSinkFromConfig(config: SinkConfig, log: Logger) {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 3 });
  const kafka = createKafka({ brokers: config.kafkaBrokers, clientId: 'sluice-sink', logger: log });
  const store = await openObjectStore({
    bucket: config.bucket,
    gcsEndpoint: config.gcsEndpoint,
    projectId: config.pubsubProject,
    localDir: config.localDir,
  });
  const announcer = createAnnouncer({
    pubsub: config.pubsubProject
      ? {
          projectId: config.pubsubProject,
          apiEndpoint: config.pubsubEmulatorHost,
          defaultTopic: config.pubsubTopic,
          createTopics: !!config.pubsubEmulatorHost,
        }
      : undefined,
    webhook: config.webhookSecret
      ? {
          secret: config.webhookSecret,
          allowPrivate: (tenant) => config.tenantPolicies.of(tenant).privateWebhooks,
        }
      : undefined,
  });
  const sink = new Sink({
    kafka,
    codecs: await createSchemaCodecs({ registryUrl: config.schemaRegistryUrl }),
    redis,
    store,
    announcer,
    log,
    prefix: config.prefix,
    partRecords: config.partRecords,
    partBytes: config.partBytes,
    flushMs: config.flushMs,
    rollupParts: config.rollupParts,
    consumerStallMs: config.consumerStallMs,
    pipelineTimeoutMs: config.pipelineTimeoutMs,
    retentionMs: config.retentionMs,
    sweepMs: config.sweepMs,
    maxActiveJobs: config.maxActiveJobs,
    idleWriterMs: config.idleWriterMs,
    prices: config.prices,
    tenants: config.tenants,
    groupId: config.groupId,
    crash: config.crash,
  });
  return {
    sink,
    store,
    close: async () => {
      await sink.stop();
      await announcer.close();
      redis.disconnect();
    },
  };
}

const log = createLogger('sink');

/** Starts the sink; stopped, its open parts are left for the next run to rewrite. */
export async function main(): Promise<RunningRole> {
  const config = loadSinkConfig();
  const { sink, store, close } = await createSinkFromConfig(config, log);
  await sink.start();
  log.info({ store: store.uri(''), announces: config.pubsubProject ? config.pubsubTopic : null }, 'sink running');
  return { stop: close };
}

if (isMainModule(import.meta.url)) runRole('sink', log, main);
