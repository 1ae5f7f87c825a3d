/** Every error code Sluice reports, with the HTTP status an API answers it with. See docs/errors.md. */
export const errorCodes = {
  // Requests to the API
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  VALIDATION_FAILED: 400,
  UNKNOWN_PROVIDER: 400,
  UNKNOWN_MODEL: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INPUT_NOT_UTF8: 415,
  INPUT_BAD_ENCODING: 400,
  JOB_NOT_OPEN: 409,
  UPLOAD_IN_PROGRESS: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  UPLOAD_TOO_LARGE: 413,
  INPUT_EMPTY: 422,
  UPLOAD_INTERRUPTED: 400,
  INPUT_CHANGED: 409,
  TOPIC_NOT_ALLOWED: 403,
  WEBHOOK_NOT_ALLOWED: 403,
  QUOTA_EXCEEDED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  // Rows of an input (each becomes an error outcome; the job goes on)
  INPUT_INVALID_JSON: 0,
  INPUT_INVALID_UTF8: 0,
  INPUT_INVALID_UNICODE: 0,
  INPUT_INVALID_CSV: 0,
  INPUT_LINE_TOO_LONG: 0,
  INPUT_MISSING_PROMPT: 0,
  INPUT_WRONG_TYPE: 0,
  INPUT_DUPLICATE_CUSTOM_ID: 0,
  INPUT_TEMPLATE_FIELD_MISSING: 0,
  INPUT_TOO_MANY_FIELDS: 0,
  INPUT_UNKNOWN_MODEL: 0,
  INPUT_RECORD_TOO_LARGE: 0,
  INPUT_OUT_OF_RANGE: 0,
  // Provider calls (each adapter classifies its failures into these)
  PROVIDER_RATE_LIMITED: 0,
  PROVIDER_QUOTA_EXHAUSTED: 0,
  PROVIDER_REQUEST_TOO_LARGE: 0,
  PROVIDER_TRANSIENT: 0,
  PROVIDER_REJECTED: 0,
  ATTEMPTS_EXHAUSTED: 0,
  JOB_CANCELLED: 0,
  PIPELINE_TIMEOUT: 0,
  // Storage
  OBJECT_EXISTS: 409,
} as const;

export type ErrorCode = keyof typeof errorCodes;

export interface SluiceErrorOptions {
  /** Whether trying again may succeed. @default false */
  retryable?: boolean;
  /** How long to wait before trying again, when known. */
  retryAfterMs?: number;
  /** Facts for logs and error bodies (never secrets or prompt text). */
  context?: Record<string, unknown>;
  /** How the caller can fix it. */
  hint?: string;
  cause?: unknown;
}

/** The base of every error Sluice throws on purpose: a stable code, retryability and context. */
export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly context: Record<string, unknown>;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.context = options.context ?? {};
    this.hint = options.hint;
  }

  /** The HTTP status an API answers this error with. */
  get statusCode(): number {
    return errorCodes[this.code] || 500;
  }
}

export function isSluiceError(err: unknown): err is SluiceError {
  return err instanceof SluiceError;
}

export { CrashPoint, crashPointNames, type CrashPointName } from './crash.js';
export { exitOnUnhandledErrors } from './fatal.js';
export { isMainModule, runRole, type RunningRole } from './role.js';
