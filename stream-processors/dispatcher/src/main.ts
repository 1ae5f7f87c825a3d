import { Redis } from 'ioredis';
import { createKafka } from '@sluice/kafka';
import { createLogger } from '@sluice/logging';
import { adapterFor } from '@sluice/providers';
import { isMainModule, runRole, type RunningRole } from '@sluice/errors';
import { loadTokenCounter, RateLimiter } from '@sluice/rate-limit';
import { createSchemaCodecs } from '@sluice/schemas';
import { loadDispatcherConfig } from './config.js';
import { Dispatcher } from './dispatcher.js';

const roleLog = createLogger('dispatcher');

/** Starts the dispatcher of one lane; stopped, it lets calls in flight finish. */
export async function main(): Promise<RunningRole> {
  const config = loadDispatcherConfig();
  const log = roleLog.child({ provider: config.lane, keyId: config.keys.map((k) => k.keyId).join(',') });
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 3 });
  // ioredis reconnects by itself; while it cannot, the rate limiter paces at this replica's share.
  let redisErrorAt = 0;
  redis.on('error', (err: Error) => {
    if (Date.now() - redisErrorAt < 10_000) return;
    redisErrorAt = Date.now();
    log.warn({ err }, 'Redis connection failed; reconnecting');
  });
  const kafka = createKafka({
    brokers: config.kafkaBrokers,
    clientId: `sluice-dispatcher-${config.provider}`,
    logger: log,
  });
  const dispatcher = new Dispatcher({
    kafka,
    codecs: await createSchemaCodecs({ registryUrl: config.schemaRegistryUrl }),
    redis,
    limiter: new RateLimiter({ redis, leaseMs: config.rateLeaseMs }),
    provider: config.lane,
    keys: config.keys.map((k) => ({
      keyId: k.keyId,
      adapter: adapterFor({ provider: config.provider, apiKey: k.apiKey, baseUrl: k.baseUrl }),
    })),
    limits: (model) => config.modelLimits[model] ?? {},
    models: config.models,
    tokenCounter: await loadTokenCounter(config.tokenizer),
    concurrency: config.concurrency,
    callTimeoutMs: config.callTimeoutMs,
    maxAttempts: config.maxAttempts,
    lanePartitions: config.lanePartitions,
    consumerStallMs: config.consumerStallMs,
    crash: config.crash,
    log,
  });
  await dispatcher.start();
  log.info({ concurrency: config.concurrency, tokenizer: config.tokenizer }, 'dispatcher running');
  return {
    stop: async () => {
      log.info({}, 'stopping: calls in flight finish first');
      await dispatcher.stop();
      redis.disconnect();
    },
  };
}

if (isMainModule(import.meta.url)) runRole('dispatcher', roleLog, main);
