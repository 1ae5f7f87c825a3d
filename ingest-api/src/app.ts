import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import { loggerOptions } from '@sluice/logging';
import type { IngestConfig } from './config.js';
import { registerAuth } from './plugins/auth.js';
import { registerErrorHandler } from './plugins/errors.js';
import { jobRoutes } from './routes/v1/jobs.js';
import { resultRoutes, type ResultsAccess } from './routes/v1/results.js';
import { tenantRoutes } from './routes/v1/tenant.js';
import type { JobService } from './services/jobs.js';

export interface AppOptions {
  config: IngestConfig;
  jobs: JobService;
  /** Where results are read from; absent: no results routes. */
  results?: ResultsAccess;
  /** pino options or false. @default info level, secrets and prompt text redacted */
  logger?: boolean | object;
}

/** Builds the ingest API. The caller owns the services and closes them after the app. */
export async function buildApp({ config, jobs, results, logger }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: logger ?? loggerOptions('ingest-api'),
    bodyLimit: config.maxJsonBodyBytes,
    // Unknown fields are an error the caller should see, not something to drop silently.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    genReqId: () => `req_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
  });
  registerErrorHandler(app);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Sluice ingest API',
        version: '1',
        description: 'Jobs of prompts run against LLM providers through Kafka.',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  await app.register(async (v1) => {
    registerAuth(v1, config.apiKeyHashes);
    jobRoutes(v1, jobs, config.maxUploadBytes);
    tenantRoutes(v1, jobs.tenancy);
    if (results) resultRoutes(v1, jobs, results);
  });
  return app;
}
