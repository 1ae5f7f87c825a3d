import type { Dialect, RateHeaderStyle } from './config.js';

/** What the simulator needs of a request, whatever the dialect. */
export interface ParsedRequest {
  model: string;
  /** All prompt text (system and user), for the provider's token count and the completion seed. */
  promptText: string;
  /** The completion budget the client asked for, if any. */
  maxTokens: number | undefined;
}

export type Dimension = 'rpm' | 'tpm' | 'rpd';

export type Rejection =
  | { kind: 'rate_limited'; dimension: Dimension; limit: number; used: number; requested: number; retryAfterMs: number }
  | { kind: 'too_large'; limit: number; requested: number }
  | { kind: 'quota' }
  | { kind: 'unauthorized' }
  | { kind: 'bad_request'; message: string }
  | { kind: 'server_error' }
  | { kind: 'unavailable'; reason: 'outage' | 'overloaded' };

/** Rate-limit state to report in headers, for the dialects that report it. */
export interface RateState {
  limitRequests?: number;
  remainingRequests?: number;
  resetRequestsMs?: number;
  limitTokens?: number;
  remainingTokens?: number;
  resetTokensMs?: number;
  /** What one window allows, and the window: the IETF fields' `q` and `w`. */
  quotaRequests?: number;
  quotaTokens?: number;
  windowMs?: number;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Success {
  id: string;
  model: string;
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length';
  created: number;
}

/** Go's time.Duration format, as OpenAI writes x-ratelimit-reset-*: "12ms", "1.5s", "6m0s". */
export function goDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms < 1_000) return `${Math.max(1, Math.round(ms))}ms`;
  const totalSeconds = ms / 1_000;
  const trim = (n: number) => String(Number(n.toFixed(3)));
  if (totalSeconds < 60) return `${trim(totalSeconds)}s`;
  const hours = Math.floor(totalSeconds / 3_600);
  const minutes = Math.floor((totalSeconds % 3_600) / 60);
  const seconds = totalSeconds % 60;
  return `${hours > 0 ? `${hours}h` : ''}${minutes}m${trim(seconds)}s`;
}

/** "Please try again in 1.234s" / "in 120ms", as OpenAI words it. */
function humanWait(ms: number): string {
  return ms < 1_000 ? `${Math.max(1, Math.ceil(ms))}ms` : `${Number((ms / 1_000).toFixed(3))}s`;
}

/** A JSON reply; `headers` is taken over (not copied) and gets the content type. */
function json(status: number, body: unknown, headers: Record<string, string> = {}): Reply {
  headers['content-type'] = 'application/json';
  return { status, headers, body: JSON.stringify(body) };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) =>
        part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string'
          ? (part as { text: string }).text
          : '',
      )
      .join('');
  }
  return '';
}

/** OpenAI, Azure OpenAI and OpenAI-compatible servers share the chat completions body. */
export function parseChat(body: unknown, pathModel?: string): ParsedRequest | string {
  if (!body || typeof body !== 'object') return 'The request body must be a JSON object.';
  const b = body as Record<string, unknown>;
  const model = pathModel ?? b['model'];
  if (typeof model !== 'string' || model === '') return 'you must provide a model parameter';
  if (!Array.isArray(b['messages']) || b['messages'].length === 0) {
    return "Invalid value for 'messages': expected a non-empty array of messages.";
  }
  let promptText = '';
  for (const m of b['messages']) {
    if (!m || typeof m !== 'object') return "Invalid type for 'messages[]': expected an object.";
    promptText += textOf((m as { content?: unknown }).content);
  }
  const max = b['max_completion_tokens'] ?? b['max_tokens'];
  if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 1)) {
    return "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1.";
  }
  if (b['stream'] === true) return 'stream=true is not supported by the provider simulator.';
  return { model, promptText, maxTokens: typeof max === 'number' ? max : undefined };
}

export function parseGemini(body: unknown, pathModel: string): ParsedRequest | string {
  if (!body || typeof body !== 'object') return 'Invalid JSON payload received.';
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b['contents']) || b['contents'].length === 0)
    return '* GenerateContentRequest.contents: contents is not specified';
  let promptText = '';
  const parts = (c: unknown) => {
    const ps = (c as { parts?: unknown })?.parts;
    if (Array.isArray(ps)) for (const p of ps) promptText += textOf([p]);
  };
  for (const c of b['contents']) parts(c);
  if (b['systemInstruction']) parts(b['systemInstruction']);
  const config = b['generationConfig'] as Record<string, unknown> | undefined;
  const max = config?.['maxOutputTokens'];
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1)) {
    return '* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer';
  }
  return { model: pathModel, promptText, maxTokens: typeof max === 'number' ? max : undefined };
}

function openaiRateHeaders(s: RateState, h: Record<string, string>): Record<string, string> {
  if (s.limitRequests !== undefined) {
    h['x-ratelimit-limit-requests'] = String(Math.floor(s.limitRequests));
    h['x-ratelimit-remaining-requests'] = String(s.remainingRequests ?? 0);
    h['x-ratelimit-reset-requests'] = goDuration(s.resetRequestsMs ?? 0);
  }
  if (s.limitTokens !== undefined) {
    h['x-ratelimit-limit-tokens'] = String(Math.floor(s.limitTokens));
    h['x-ratelimit-remaining-tokens'] = String(s.remainingTokens ?? 0);
    h['x-ratelimit-reset-tokens'] = goDuration(s.resetTokensMs ?? 0);
  }
  return h;
}

/**
 * The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-09): a policy per limit with its
 * quota `q` per window `w` (seconds) and unit `qu`, and the state: remaining `r`, seconds to reset `t`.
 */
function ietfRateHeaders(s: RateState, h: Record<string, string>): Record<string, string> {
  const w = Math.max(1, Math.round((s.windowMs ?? 60_000) / 1_000));
  const policy: string[] = [];
  const state: string[] = [];
  if (s.limitRequests !== undefined) {
    policy.push(`"requests";q=${Math.floor(s.quotaRequests ?? s.limitRequests)};w=${w}`);
    state.push(`"requests";r=${s.remainingRequests ?? 0};t=${Math.ceil((s.resetRequestsMs ?? 0) / 1_000)}`);
  }
  if (s.limitTokens !== undefined) {
    policy.push(`"tokens";q=${Math.floor(s.quotaTokens ?? s.limitTokens)};qu="tokens";w=${w}`);
    state.push(`"tokens";r=${s.remainingTokens ?? 0};t=${Math.ceil((s.resetTokensMs ?? 0) / 1_000)}`);
  }
  if (policy.length > 0) {
    h['ratelimit-policy'] = policy.join(', ');
    h['ratelimit'] = state.join(', ');
  }
  return h;
}

/** The rate headers of a key's style. */
function rateHeaders(ctx: FormatContext, h: Record<string, string>): Record<string, string> {
  switch (ctx.headers ?? 'openai') {
    case 'openai':
      return openaiRateHeaders(ctx.rate, h);
    case 'remaining':
      return Object.assign(h, azureRateHeaders(ctx.rate, ctx.minusOne === true));
    case 'ietf':
      return ietfRateHeaders(ctx.rate, h);
    case 'none':
      return h;
  }
}

function azureRateHeaders(s: RateState, minusOne: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (s.limitRequests !== undefined)
    h['x-ratelimit-remaining-requests'] = minusOne ? '-1' : String(s.remainingRequests ?? 0);
  if (s.limitTokens !== undefined) h['x-ratelimit-remaining-tokens'] = minusOne ? '-1' : String(s.remainingTokens ?? 0);
  return h;
}

const dimensionWords: Record<Dimension, string> = {
  rpm: 'requests per min (RPM)',
  tpm: 'tokens per min (TPM)',
  rpd: 'requests per day (RPD)',
};

function openaiSuccess(s: Success, headers: Record<string, string>): Reply {
  return json(
    200,
    {
      id: s.id,
      object: 'chat.completion',
      created: s.created,
      model: s.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: s.text, refusal: null },
          logprobs: null,
          finish_reason: s.finishReason,
        },
      ],
      usage: {
        prompt_tokens: s.promptTokens,
        completion_tokens: s.completionTokens,
        total_tokens: s.promptTokens + s.completionTokens,
      },
      system_fingerprint: 'fp_sluice_sim',
    },
    headers,
  );
}

const openaiError = (
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers: Record<string, string> = {},
) => json(status, { error: { message, type, param: null, code } }, headers);

function openaiReject(r: Rejection, model: string, headers: Record<string, string>): Reply {
  switch (r.kind) {
    case 'rate_limited':
      return openaiError(
        429,
        `Rate limit reached for ${model} in organization org-sluice-sim on ${dimensionWords[r.dimension]}: ` +
          `Limit ${Math.floor(r.limit)}, Used ${Math.ceil(r.used)}, Requested ${r.requested}. ` +
          `Please try again in ${humanWait(r.retryAfterMs)}. Visit https://platform.openai.com/account/rate-limits to learn more.`,
        r.dimension === 'tpm' ? 'tokens' : 'requests',
        'rate_limit_exceeded',
        { ...headers, 'retry-after': String(Math.max(1, Math.ceil(r.retryAfterMs / 1_000))) },
      );
    case 'too_large':
      return openaiError(
        429,
        `Request too large for ${model} in organization org-sluice-sim on tokens per min (TPM): Limit ${Math.floor(r.limit)}, ` +
          `Requested ${r.requested}. The input or output tokens must be reduced in order to run successfully. ` +
          'Visit https://platform.openai.com/account/rate-limits to learn more.',
        'tokens',
        'rate_limit_exceeded',
        headers,
      );
    case 'quota':
      return openaiError(
        429,
        'You exceeded your current quota, please check your plan and billing details. For more information on this error, ' +
          'read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
        'insufficient_quota',
        'insufficient_quota',
      );
    case 'unauthorized':
      return openaiError(
        401,
        'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.',
        'invalid_request_error',
        'invalid_api_key',
      );
    case 'bad_request':
      return openaiError(400, r.message, 'invalid_request_error', null);
    case 'server_error':
      return openaiError(
        500,
        'The server had an error while processing your request. Sorry about that!',
        'server_error',
        null,
        headers,
      );
    case 'unavailable':
      return openaiError(
        503,
        r.reason === 'overloaded'
          ? 'The server is overloaded or not ready yet.'
          : 'The engine is currently overloaded, please try again later.',
        'server_error',
        null,
        headers,
      );
  }
}

function azureReject(r: Rejection, model: string, headers: Record<string, string>, apiVersion: string): Reply {
  const err = (status: number, code: string, message: string, extra: Record<string, string> = {}) =>
    json(status, { error: { code, message } }, { ...headers, ...extra });
  switch (r.kind) {
    case 'rate_limited': {
      const seconds = Math.max(1, Math.ceil(r.retryAfterMs / 1_000));
      const what =
        r.dimension === 'tpm' ? 'token rate limit' : r.dimension === 'rpm' ? 'call rate limit' : 'daily quota';
      return err(
        429,
        '429',
        `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ${apiVersion} have exceeded ` +
          `${what} of your current OpenAI S0 pricing tier. Please retry after ${seconds} seconds. ` +
          'Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.',
        { 'retry-after': String(seconds), 'retry-after-ms': String(Math.max(1, Math.ceil(r.retryAfterMs))) },
      );
    }
    case 'too_large':
      return err(
        400,
        'tokens_limit_reached',
        `Request body too large for ${model} model. Max size: ${Math.floor(r.limit)} tokens.`,
      );
    case 'quota':
      return err(
        429,
        'InsufficientQuota',
        'The quota for this deployment is exhausted. Please retry after 86400 seconds or raise the quota.',
        { 'retry-after': '86400', 'retry-after-ms': '86400000' },
      );
    case 'unauthorized':
      return err(
        401,
        '401',
        'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.',
      );
    case 'bad_request':
      return err(400, 'BadRequest', r.message);
    case 'server_error':
      return err(500, 'InternalServerError', 'The server had an error while processing your request.');
    case 'unavailable':
      return err(
        503,
        'ServiceUnavailable',
        'The service is temporarily unable to process your request. Please try again later.',
      );
  }
}

function geminiSuccess(s: Success, headers: Record<string, string>): Reply {
  return json(
    200,
    {
      candidates: [
        {
          content: { parts: [{ text: s.text }], role: 'model' },
          finishReason: s.finishReason === 'length' ? 'MAX_TOKENS' : 'STOP',
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: s.promptTokens,
        candidatesTokenCount: s.completionTokens,
        totalTokenCount: s.promptTokens + s.completionTokens,
      },
      modelVersion: s.model,
      responseId: s.id,
    },
    headers,
  );
}

const quotaIds: Record<Dimension, { id: string; metric: string }> = {
  rpm: {
    id: 'GenerateRequestsPerMinutePerProjectPerModel',
    metric: 'generativelanguage.googleapis.com/generate_content_requests',
  },
  tpm: {
    id: 'GenerateContentInputTokensPerModelPerMinute',
    metric: 'generativelanguage.googleapis.com/generate_content_input_token_count',
  },
  rpd: {
    id: 'GenerateRequestsPerDayPerProjectPerModel',
    metric: 'generativelanguage.googleapis.com/generate_content_requests',
  },
};

function geminiReject(r: Rejection, model: string, headers: Record<string, string>): Reply {
  const err = (code: number, status: string, message: string, details: unknown[] = []) =>
    json(code, { error: { code, message, status, ...(details.length ? { details } : {}) } }, { ...headers });
  switch (r.kind) {
    case 'rate_limited':
    case 'quota': {
      const dim: Dimension = r.kind === 'quota' ? 'rpd' : r.dimension;
      const limit = r.kind === 'quota' ? 0 : r.limit;
      const details: unknown[] = [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [
            {
              quotaMetric: quotaIds[dim].metric,
              quotaId: quotaIds[dim].id,
              quotaDimensions: { location: 'global', model },
              quotaValue: String(Math.floor(limit)),
            },
          ],
        },
        {
          '@type': 'type.googleapis.com/google.rpc.Help',
          links: [
            {
              description: 'Learn more about Gemini API quotas',
              url: 'https://ai.google.dev/gemini-api/docs/rate-limits',
            },
          ],
        },
      ];
      if (r.kind === 'rate_limited') {
        details.push({
          '@type': 'type.googleapis.com/google.rpc.RetryInfo',
          retryDelay: `${Math.max(1, Math.ceil(r.retryAfterMs / 1_000))}s`,
        });
      }
      return err(
        429,
        'RESOURCE_EXHAUSTED',
        'You exceeded your current quota, please check your plan and billing details. For more information on this error, ' +
          'head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
        details,
      );
    }
    case 'too_large':
      return err(
        400,
        'INVALID_ARGUMENT',
        `The input token count (${r.requested}) exceeds the maximum number of tokens allowed (${Math.floor(r.limit)}).`,
      );
    case 'unauthorized':
      return err(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'API_KEY_INVALID',
          domain: 'googleapis.com',
          metadata: { service: 'generativelanguage.googleapis.com' },
        },
      ]);
    case 'bad_request':
      return err(400, 'INVALID_ARGUMENT', r.message);
    case 'server_error':
      return err(
        500,
        'INTERNAL',
        'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
      );
    case 'unavailable':
      return err(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');
  }
}

export interface FormatContext {
  dialect: Dialect;
  model: string;
  rate: RateState;
  /** azure: write -1 in the rate headers of this reply. */
  minusOne?: boolean;
  apiVersion?: string;
  requestId: string;
  /** Which rate headers to write. @default "openai" */
  headers?: RateHeaderStyle;
}

function baseHeaders(ctx: FormatContext): Record<string, string> {
  switch (ctx.dialect) {
    case 'openai':
      return rateHeaders(ctx, { 'x-request-id': ctx.requestId, 'openai-processing-ms': '1' });
    case 'azure':
      return rateHeaders(ctx, { 'apim-request-id': ctx.requestId, 'x-request-id': ctx.requestId });
    case 'gemini':
    case 'compatible':
      return rateHeaders(ctx, {});
  }
}

export function formatSuccess(ctx: FormatContext, s: Success): Reply {
  if (ctx.dialect === 'gemini') return geminiSuccess(s, baseHeaders(ctx));
  return openaiSuccess(s, baseHeaders(ctx));
}

export function formatRejection(ctx: FormatContext, r: Rejection): Reply {
  switch (ctx.dialect) {
    case 'openai':
    case 'compatible':
      return openaiReject(r, ctx.model, baseHeaders(ctx));
    case 'azure':
      return azureReject(r, ctx.model, baseHeaders(ctx), ctx.apiVersion ?? '2024-10-21');
    case 'gemini':
      return geminiReject(r, ctx.model, baseHeaders(ctx));
  }
}
