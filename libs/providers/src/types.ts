import { SluiceError, type ErrorCode } from '@sluice/errors';

export interface ChatMessage {
  role: string;
  content: string;
}

/** One prompt to a provider, whatever the provider. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  maxTokens?: number | null;
  temperature?: number | null;
  topP?: number | null;
  stop?: string[] | null;
  seed?: number | null;
  /** The response_format object (OpenAI shape); Gemini gets JSON mode for json_object. */
  responseFormat?: Record<string, unknown> | null;
  /** The call's deadline. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Rate-limit state a provider reported, where it reports any. */
export interface RateHeaders {
  limitRequests?: number;
  remainingRequests?: number;
  resetRequestsMs?: number;
  limitTokens?: number;
  remainingTokens?: number;
  resetTokensMs?: number;
  /** The window a limit was stated over (IETF `w`), where the provider says; limits are per minute. */
  windowRequestsMs?: number;
  windowTokensMs?: number;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface ChatResult {
  text: string;
  finishReason: string | null;
  usage: Usage;
  model: string;
  latencyMs: number;
  /** The provider's response body, JSON text. */
  body: string;
  rate: RateHeaders;
}

/**
 * How a failed call should be handled:
 * - rate_limited: wait `retryAfterMs` (when known) and try again;
 * - quota_exhausted: the account cannot serve it; never retried;
 * - request_too_large: the request can never fit the limits or context; never retried;
 * - transient: 5xx, timeouts, broken connections or bodies; retried with backoff;
 * - permanent: any other refusal (bad request, auth); never retried.
 */
export type FailureKind = 'rate_limited' | 'quota_exhausted' | 'request_too_large' | 'transient' | 'permanent';

const codeOf: Record<FailureKind, ErrorCode> = {
  rate_limited: 'PROVIDER_RATE_LIMITED',
  quota_exhausted: 'PROVIDER_QUOTA_EXHAUSTED',
  request_too_large: 'PROVIDER_REQUEST_TOO_LARGE',
  transient: 'PROVIDER_TRANSIENT',
  permanent: 'PROVIDER_REJECTED',
};

export class ProviderError extends SluiceError {
  readonly kind: FailureKind;
  readonly status: number | undefined;
  readonly rate: RateHeaders;

  constructor(
    kind: FailureKind,
    message: string,
    options: { status?: number; retryAfterMs?: number; rate?: RateHeaders; provider: string; cause?: unknown },
  ) {
    super(codeOf[kind], message, {
      retryable: kind === 'rate_limited' || kind === 'transient',
      retryAfterMs: options.retryAfterMs,
      context: { provider: options.provider, status: options.status },
      cause: options.cause,
    });
    this.name = 'ProviderError';
    this.kind = kind;
    this.status = options.status;
    this.rate = options.rate ?? {};
  }
}

export interface ProviderAdapter {
  /** openai | azure | gemini | compatible */
  readonly provider: string;
  /** Calls the provider once (no SDK retries); throws ProviderError on failure. */
  chat(request: ChatRequest): Promise<ChatResult>;
}
