import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, AzureOpenAI } from 'openai';
import { limitFromMessage, readRateHeaders, retryAfterMs } from './headers.js';
import { ProviderError, type ChatRequest, type ChatResult, type FailureKind, type ProviderAdapter } from './types.js';
import { LeanResponse, leanFetch } from './lean-fetch.js';

/**
 * How an OpenAI-family failure is handled, in one table: the first row that matches decides.
 * OpenAI answers "Request too large" and insufficient_quota with 429 too, so those rows come first.
 */
const table: Array<{ when: (e: APIError) => boolean; kind: FailureKind }> = [
  {
    when: (e) => e.code === 'insufficient_quota' || e.type === 'insufficient_quota' || e.code === 'InsufficientQuota',
    kind: 'quota_exhausted',
  },
  { when: (e) => /request too large/i.test(e.message), kind: 'request_too_large' },
  {
    when: (e) =>
      ['tokens_limit_reached', 'context_length_exceeded', 'string_above_max_length'].includes(String(e.code)),
    kind: 'request_too_large',
  },
  { when: (e) => e.status === 429, kind: 'rate_limited' },
  {
    when: (e) => e.status === 408 || e.status === 409 || (e.status !== undefined && e.status >= 500),
    kind: 'transient',
  },
  { when: () => true, kind: 'permanent' },
];

export function classifyOpenAIError(err: unknown, provider: string): ProviderError {
  if (err instanceof APIConnectionTimeoutError) {
    return new ProviderError('transient', `${provider}: the call timed out`, { provider, cause: err });
  }
  if (err instanceof APIConnectionError) {
    return new ProviderError('transient', `${provider}: connection failed: ${err.message}`, { provider, cause: err });
  }
  if (err instanceof APIError) {
    const kind = table.find((row) => row.when(err))!.kind;
    return new ProviderError(kind, `${provider}: ${err.message}`, {
      provider,
      status: err.status,
      retryAfterMs: kind === 'rate_limited' ? retryAfterMs(err.headers, err.message) : undefined,
      rate: { ...(err.status === 429 ? limitFromMessage(err.message) : {}), ...readRateHeaders(err.headers) },
      cause: err,
    });
  }
  // A body that is not JSON, a stream cut off: the provider may answer properly next time.
  return new ProviderError('transient', `${provider}: unreadable answer: ${(err as Error).message}`, {
    provider,
    cause: err,
  });
}

function body(req: ChatRequest, model: string): OpenAI.Chat.ChatCompletionCreateParamsNonStreaming {
  const b: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming = {
    model,
    messages: req.messages as OpenAI.Chat.ChatCompletionMessageParam[],
  };
  if (req.maxTokens != null) b.max_tokens = req.maxTokens;
  if (req.temperature != null) b.temperature = req.temperature;
  if (req.topP != null) b.top_p = req.topP;
  if (req.stop != null) b.stop = req.stop;
  if (req.seed != null) b.seed = req.seed;
  if (req.responseFormat != null) b.response_format = req.responseFormat as unknown as OpenAI.ResponseFormatJSONObject;
  return b;
}

function adapter(provider: string, client: OpenAI, modelFor: (model: string) => string): ProviderAdapter {
  return {
    provider,
    async chat(req: ChatRequest): Promise<ChatResult> {
      const started = performance.now();
      try {
        const { data, response } = await client.chat.completions
          .create(body(req, modelFor(req.model)), { timeout: req.timeoutMs, signal: req.signal, maxRetries: 0 })
          .withResponse();
        const choice = data.choices[0];
        return {
          text: choice?.message.content ?? '',
          finishReason: choice?.finish_reason ?? null,
          usage: {
            promptTokens: data.usage?.prompt_tokens ?? 0,
            completionTokens: data.usage?.completion_tokens ?? 0,
            totalTokens: data.usage?.total_tokens ?? 0,
          },
          model: data.model,
          latencyMs: Math.round(performance.now() - started),
          // The answer as the provider sent it (a JSON text, as the SDK parsed it).
          body: response instanceof LeanResponse ? response.rawText() : JSON.stringify(data),
          rate: readRateHeaders(response.headers),
        };
      } catch (err) {
        throw classifyOpenAIError(err, provider);
      }
    },
  };
}

export interface OpenAIAdapterOptions {
  apiKey: string;
  /** @default https://api.openai.com/v1 */
  baseURL?: string;
  organization?: string;
}

export function createOpenAIAdapter(o: OpenAIAdapterOptions): ProviderAdapter {
  return adapter(
    'openai',
    new OpenAI({
      apiKey: o.apiKey,
      baseURL: o.baseURL,
      organization: o.organization,
      maxRetries: 0,
      fetch: leanFetch(),
    }),
    (m) => m,
  );
}

export interface AzureAdapterOptions {
  /** https://<resource>.openai.azure.com */
  endpoint: string;
  apiKey: string;
  /** @default 2024-10-21 */
  apiVersion?: string;
  /** Model name → deployment name; a model without one is used as the deployment name. */
  deployments?: Record<string, string>;
}

export function createAzureAdapter(o: AzureAdapterOptions): ProviderAdapter {
  const client = new AzureOpenAI({
    endpoint: o.endpoint,
    apiKey: o.apiKey,
    apiVersion: o.apiVersion ?? '2024-10-21',
    maxRetries: 0,
    fetch: leanFetch(),
  });
  // The AzureOpenAI client routes by the model field: /openai/deployments/{model}/...
  return adapter('azure', client, (m) => o.deployments?.[m] ?? m);
}

export interface CompatibleAdapterOptions {
  /** The server's OpenAI-compatible base URL, e.g. http://vllm:8000/v1 */
  baseURL: string;
  /** @default "none" */
  apiKey?: string;
}

export function createCompatibleAdapter(o: CompatibleAdapterOptions): ProviderAdapter {
  return adapter(
    'compatible',
    new OpenAI({ apiKey: o.apiKey ?? 'none', baseURL: o.baseURL, maxRetries: 0, fetch: leanFetch() }),
    (m) => m,
  );
}
