import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SluiceError } from '@sluice/errors';
import { hashApiKey } from '../config.js';

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string;
  }
}

function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers['authorization'];
  if (typeof auth === 'string' && auth.toLowerCase().startsWith('bearer ')) return auth.slice(7).trim();
  const header = request.headers['x-api-key'];
  return typeof header === 'string' ? header : undefined;
}

/**
 * API keys map to tenants. Only sha256 hashes of keys are configured; a request's key is hashed and
 * looked up. Every route registered after this hook needs a valid key.
 */
export function registerAuth(app: FastifyInstance, keyHashes: ReadonlyMap<string, string>): void {
  app.decorateRequest('tenant', '');
  app.addHook('onRequest', async (request) => {
    const key = presentedKey(request);
    const tenant = key === undefined ? undefined : keyHashes.get(hashApiKey(key));
    if (tenant === undefined) {
      throw new SluiceError(
        'UNAUTHORIZED',
        key === undefined ? 'no API key: send Authorization: Bearer <key>' : 'the API key is not valid',
      );
    }
    request.tenant = tenant;
  });
}
