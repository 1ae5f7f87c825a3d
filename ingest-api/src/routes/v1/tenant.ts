import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Tenancy } from '../../services/tenancy.js';

/** What a tenant reads of its own settings: the key its webhooks are signed with, and its quotas. */
export function tenantRoutes(app: FastifyInstance, tenancy: Tenancy): void {
  app.get(
    '/v1/webhook-secret',
    {
      schema: {
        summary: "The key this tenant's webhooks are signed with",
        description:
          'Each request Sluice posts carries x-sluice-timestamp and x-sluice-signature: sha256=HMAC-SHA256(key, ' +
          '"<timestamp>.<body>") in hex. The key is the tenant\'s own (docs/announcements.md).',
        response: {
          200: Type.Object({ tenant: Type.String(), secret: Type.String(), algorithm: Type.Literal('HMAC-SHA256') }),
        },
      },
    },
    async (request) => ({
      tenant: request.tenant,
      secret: tenancy.webhookSecret(request.tenant),
      algorithm: 'HMAC-SHA256' as const,
    }),
  );

  app.get(
    '/v1/quotas',
    {
      schema: {
        summary: "This tenant's quotas and what it uses of them",
        response: {
          200: Type.Object({
            tenant: Type.String(),
            maxOpenJobs: Type.Integer(),
            openJobs: Type.Integer(),
            maxOpenRows: Type.Integer(),
            openRows: Type.Integer(),
            uploadBytesPerMinute: Type.Union([Type.Integer(), Type.Null()]),
            pubsubTopics: Type.Array(Type.String()),
            privateWebhooks: Type.Boolean(),
          }),
        },
      },
    },
    async (request) => tenancy.usage(request.tenant),
  );
}
