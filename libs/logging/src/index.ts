import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * Paths whose values never reach a log, in every role and in Fastify's request logs: credentials
 * (API keys in any header Sluice or a provider uses, secrets), and the text of prompts and
 * completions.
 */
export const redactPaths: readonly string[] = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers["x-goog-api-key"]',
  'apiKey',
  '*.apiKey',
  'secret',
  '*.secret',
  'webhookSecret',
  '*.webhookSecret',
  '*.prompt',
  '*.messages',
  '*.content',
];

/** The options of every logger Sluice makes (Fastify's included): JSON, one name per role, redaction. */
export function loggerOptions(role: string, o: { level?: string } = {}): LoggerOptions {
  return { name: role, level: o.level ?? 'info', redact: { paths: [...redactPaths], censor: '[redacted]' } };
}

/** A role's logger (`destination`: where lines go; stdout by default). */
export function createLogger(role: string, o: { level?: string; destination?: DestinationStream } = {}): Logger {
  return o.destination ? pino(loggerOptions(role, o), o.destination) : pino(loggerOptions(role, o));
}

export type { Logger };
