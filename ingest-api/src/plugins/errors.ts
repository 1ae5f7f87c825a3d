import type { FastifyError, FastifyInstance } from 'fastify';
import { isSluiceError } from '@sluice/errors';

/** The body of every error answer: a stable code, a message, and how to fix it when known. */
export interface ErrorBody {
  error: { code: string; message: string; hint?: string; line?: number; requestId?: string; [k: string]: unknown };
}

/** One error handler: Sluice errors keep their code; validation errors are 400; 5xx never leak internals. */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    if (isSluiceError(err)) {
      const status = err.statusCode;
      if (status >= 500) request.log.error({ err }, 'request failed');
      if (err.retryAfterMs !== undefined) reply.header('retry-after', String(Math.ceil(err.retryAfterMs / 1000)));
      const body: ErrorBody = { error: { code: err.code, message: err.message, ...err.context } };
      if (err.hint) body.error.hint = err.hint;
      return reply.status(status).send(body);
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      return reply.status(400).send({
        error: {
          code: 'VALIDATION_FAILED',
          message: `${fe.validationContext ?? 'request'} ${fe.message.replace(/^(body|querystring|params|headers)\s*/, '')}`,
        },
      } satisfies ErrorBody);
    }
    if (fe.statusCode && fe.statusCode < 500) {
      const code =
        fe.statusCode === 413
          ? 'UPLOAD_TOO_LARGE'
          : fe.statusCode === 415
            ? 'UNSUPPORTED_MEDIA_TYPE'
            : 'VALIDATION_FAILED';
      return reply.status(fe.statusCode).send({ error: { code, message: fe.message } } satisfies ErrorBody);
    }
    request.log.error({ err }, 'request failed');
    return reply.status(500).send({
      error: {
        code: 'INTERNAL',
        message: 'internal error; the request id helps the operators find it',
        requestId: request.id,
      },
    } satisfies ErrorBody);
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url}` } } satisfies ErrorBody),
  );
}
