import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { buildApp, hashApiKey, JobService, loadConfig, openResultsAccess } from '@sluice/ingest-api';
import { createKafka } from '@sluice/kafka';
import { adapterFor } from '@sluice/providers';
import { loadTokenCounter, RateLimiter, type BucketLimits } from '@sluice/rate-limit';
import { createSchemaCodecs } from '@sluice/schemas';
import {
  createSinkFromConfig,
  DelayProcessor,
  Dispatcher,
  loadSinkConfig,
  type DispatcherConfig,
} from '@sluice/stream-processors';

export interface DevLane {
  /** The lane: jobs of this provider go to sluice.requests.<provider>. */
  provider: string;
  /** Which API the lane calls. @default the provider, when it is one of these */
  adapter?: DispatcherConfig['provider'];
  apiKey: string;
  /** Base URL (the simulator's, a compatible server's, Azure's endpoint). */
  baseUrl?: string;
  keyId?: string;
  modelLimits?: Record<string, BucketLimits>;
}

export interface DevOptions {
  /** Settings as the processes read them: the stack's (.sluice/stack.env) and SLUICE_* overrides. */
  env: Record<string, string | undefined>;
  /** One dispatcher per lane. */
  lanes: DevLane[];
  log: Logger;
  /** @default 8080; 0 picks a free port */
  port?: number;
}

export interface DevRunning {
  /** The ingest API's base URL. */
  url: string;
  /** The API key of tenant "dev" when SLUICE_API_KEYS is not set. */
  apiKey: string | undefined;
  resultsUri: string;
  close(): Promise<void>;
}

/** The dev API key, when none are configured: fine on loopback, never for a shared deployment. */
export const devApiKey = 'sk-sluice-dev';

/**
 * Every role of Sluice in one process, for a laptop: the ingest API, a dispatcher per lane, the
 * delay processor and the sink, on the local stack. In production each is its own Deployment.
 */
export async function startDev(o: DevOptions): Promise<DevRunning> {
  const env = { ...o.env };
  let apiKey: string | undefined;
  if (!env['SLUICE_API_KEYS']) {
    apiKey = devApiKey;
    env['SLUICE_API_KEYS'] = `dev:${hashApiKey(devApiKey)}`;
  }
  // On a laptop every topic is the developer's and a webhook receiver runs on localhost: the
  // dev tenant may name any topic and post to private addresses (never for a shared deployment).
  if (!env['SLUICE_TENANTS'])
    env['SLUICE_TENANTS'] = JSON.stringify({ '*': { pubsubTopics: ['*'], privateWebhooks: true } });
  env['SLUICE_INGEST_PORT'] = String(o.port ?? 8080);
  const ingestConfig = loadConfig(env);
  const sinkConfig = loadSinkConfig(env);
  const log = o.log;
  const redis = new Redis(ingestConfig.redisUrl, { maxRetriesPerRequest: 3 });
  const kafka = createKafka({ brokers: ingestConfig.kafkaBrokers, clientId: 'sluice-dev', logger: log });
  const codecs = await createSchemaCodecs({ registryUrl: ingestConfig.schemaRegistryUrl });

  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch((err: unknown) => log.warn({ err }, 'stopping a role failed'));
    redis.disconnect();
  };
  try {
    const { sink, close: closeSink } = await createSinkFromConfig(sinkConfig, log.child({ role: 'sink' }));
    await sink.start();
    closers.push(closeSink);

    const delay = new DelayProcessor({ kafka, log: log.child({ role: 'delay' }) });
    await delay.start();
    closers.push(() => delay.stop());

    const tokenCounter = await loadTokenCounter('o200k_base');
    for (const lane of o.lanes) {
      const c = {
        provider: (lane.adapter ?? lane.provider) as DispatcherConfig['provider'],
        apiKey: lane.apiKey,
        baseUrl: lane.baseUrl,
      };
      const dispatcher = new Dispatcher({
        kafka,
        codecs,
        redis,
        limiter: new RateLimiter({ redis }),
        provider: lane.provider,
        adapter: adapterFor(c),
        keyId: lane.keyId ?? `${lane.provider}-dev`,
        limits: (model) => lane.modelLimits?.[model] ?? {},
        // The models the API takes for this lane are the ones its dispatcher serves.
        models: ingestConfig.models[lane.provider],
        tokenCounter,
        lanePartitions: ingestConfig.lanePartitions,
        log: log.child({ role: 'dispatcher', provider: lane.provider }),
      });
      await dispatcher.start();
      closers.push(() => dispatcher.stop(5_000));
    }

    const jobs = new JobService({ kafka, redis, codecs, config: ingestConfig, log: log.child({ role: 'ingest' }) });
    await jobs.start();
    closers.push(() => jobs.close());
    const results = await openResultsAccess(ingestConfig.results);
    const app = await buildApp({
      config: ingestConfig,
      jobs,
      results,
      logger: false,
    });
    await app.listen({ port: ingestConfig.port, host: ingestConfig.host });
    closers.push(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    return { url: `http://${ingestConfig.host}:${port}`, apiKey, resultsUri: results.store.uri(results.prefix), close };
  } catch (err) {
    await close();
    throw err;
  }
}
