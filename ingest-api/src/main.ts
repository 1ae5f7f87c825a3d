import { Redis } from 'ioredis';
import { isMainModule, runRole, type RunningRole } from '@sluice/errors';
import { createKafka } from '@sluice/kafka';
import { createLogger } from '@sluice/logging';
import { openResultsAccess } from './routes/v1/results.js';
import { createSchemaCodecs } from '@sluice/schemas';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';
import { JobService } from './services/jobs.js';

const log = createLogger('ingest-api');

/** Starts the ingest API: Kafka topics, the schema registry, the Redis view, then HTTP. */
export async function main(): Promise<RunningRole> {
  const config = loadConfig();
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 3 });
  const codecs = await createSchemaCodecs({ registryUrl: config.schemaRegistryUrl });
  const kafka = createKafka({ brokers: config.kafkaBrokers, clientId: 'sluice-ingest-api', logger: log });
  const jobs = new JobService({
    kafka,
    redis,
    codecs,
    config,
    log,
    uploadLockMs: config.uploadLockMs,
  });
  await jobs.start();
  const results = await openResultsAccess(config.results);
  const app = await buildApp({
    config,
    jobs,
    results,
  });
  const address = await app.listen({ port: config.port, host: config.host });
  log.info({ address }, 'ingest API listening');
  return {
    stop: async () => {
      await app.close();
      await jobs.close();
      redis.disconnect();
    },
  };
}

if (isMainModule(import.meta.url)) runRole('ingest-api', log, main);
