import { Redis } from 'ioredis';
import { pino } from 'pino';
import { exitOnUnhandledErrors } from '@sluice/errors';
import { createKafka } from '@sluice/kafka';
import { openResultsAccess } from './routes/v1/results.js';
import { createSchemaCodecs } from '@sluice/schemas';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';
import { JobService } from './services/jobs.js';

/** Starts the ingest API: Kafka topics, the schema registry, the Redis view, then HTTP. */
export async function main(): Promise<void> {
  const config = loadConfig();
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 3 });
  const codecs = await createSchemaCodecs({ registryUrl: config.schemaRegistryUrl });
  const log = pino({ name: 'ingest-api' });
  exitOnUnhandledErrors(log);
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
  const shutdown = async (signal: string) => {
    log.info({ signal }, 'shutting down');
    await app.close();
    await jobs.close();
    redis.disconnect();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  const address = await app.listen({ port: config.port, host: config.host });
  log.info({ address }, 'ingest API listening');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(`ingest-api: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
