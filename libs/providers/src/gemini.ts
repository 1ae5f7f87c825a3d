import { ApiError, GoogleGenAI, type GenerateContentConfig } from '@google/genai';
import { leanFetch } from './lean-fetch.js';
import {
  ProviderError,
  type ChatRequest,
  type ChatResult,
  type FailureKind,
  type ProviderAdapter,
  type RateHeaders,
} from './types.js';

interface GeminiErrorBody {
  error?: {
    status?: string;
    message?: string;
    details?: Array<{
      '@type'?: string;
      retryDelay?: string;
      violations?: Array<{ quotaValue?: string; quotaId?: string }>;
      reason?: string;
    }>;
  };
}

function parseBody(message: string): GeminiErrorBody {
  try {
    return JSON.parse(message) as GeminiErrorBody;
  } catch {
    const start = message.indexOf('{');
    try {
      return start >= 0 ? (JSON.parse(message.slice(start)) as GeminiErrorBody) : {};
    } catch {
      return {};
    }
  }
}

/** How a Gemini failure is handled, in one table: the first row that matches decides. */
const table: Array<{ when: (status: number, b: GeminiErrorBody) => boolean; kind: FailureKind }> = [
  {
    // A quota of 0 is not a rate: the project has no allowance for this model.
    when: (s, b) => s === 429 && (b.error?.details ?? []).some((d) => d.violations?.some((v) => v.quotaValue === '0')),
    kind: 'quota_exhausted',
  },
  { when: (s) => s === 429, kind: 'rate_limited' },
  {
    when: (s, b) => s === 400 && /exceeds the maximum number of tokens/i.test(b.error?.message ?? ''),
    kind: 'request_too_large',
  },
  { when: (s) => s === 408 || s >= 500, kind: 'transient' },
  { when: () => true, kind: 'permanent' },
];

function retryDelayMs(b: GeminiErrorBody): number | undefined {
  const delay = b.error?.details?.find((d) => d['@type']?.endsWith('RetryInfo'))?.retryDelay;
  const m = delay ? /^(\d+(?:\.\d+)?)s$/.exec(delay) : null;
  return m ? Number(m[1]) * 1_000 : undefined;
}

/**
 * Per-minute limits a Gemini 429 states: QuotaFailure violations whose quotaId names a per-minute
 * quota of requests or of (input) tokens, e.g. GenerateRequestsPerMinutePerProjectPerModel = 15.
 */
function quotaLimits(b: GeminiErrorBody): RateHeaders {
  const out: RateHeaders = {};
  for (const d of b.error?.details ?? [])
    for (const v of d.violations ?? []) {
      const value = Number(v.quotaValue);
      const id = v.quotaId ?? '';
      if (!Number.isFinite(value) || value <= 0 || !/PerMinute/i.test(id)) continue;
      if (/Requests/i.test(id)) out.limitRequests = value;
      else if (/Tokens/i.test(id)) out.limitTokens = value;
    }
  return out;
}

export function classifyGeminiError(err: unknown): ProviderError {
  if (err instanceof ApiError) {
    const b = parseBody(err.message);
    const kind = table.find((row) => row.when(err.status, b))!.kind;
    return new ProviderError(kind, `gemini: ${b.error?.message ?? err.message}`, {
      provider: 'gemini',
      status: err.status,
      retryAfterMs: kind === 'rate_limited' ? retryDelayMs(b) : undefined,
      rate: kind === 'rate_limited' ? quotaLimits(b) : undefined,
      cause: err,
    });
  }
  const e = err as Error;
  if (e.name === 'AbortError' || /abort|timed? ?out/i.test(e.message)) {
    return new ProviderError('transient', 'gemini: the call timed out', { provider: 'gemini', cause: err });
  }
  return new ProviderError('transient', `gemini: ${e.message}`, { provider: 'gemini', cause: err });
}

export interface GeminiAdapterOptions {
  apiKey: string;
  /** @default https://generativelanguage.googleapis.com */
  baseUrl?: string;
}

export function createGeminiAdapter(o: GeminiAdapterOptions): ProviderAdapter {
  // On node:http's keep-alive agents, not Node's fetch: the web streams and transferable signals of
  // Node's fetch took a quarter of the Gemini lane's dispatcher (a profile of bench:e2e --quick:
  // undici 15.6 %, web streams 6.8 %, makeTransferable 2.5 % of its busy time), as they had the OpenAI one's.
  const ai = new GoogleGenAI({
    apiKey: o.apiKey,
    httpOptions: { ...(o.baseUrl ? { baseUrl: o.baseUrl } : {}), fetch: leanFetch() },
  });
  return {
    provider: 'gemini',
    async chat(req: ChatRequest): Promise<ChatResult> {
      const system = req.messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => m.content);
      const contents = req.messages
        .filter((m) => m.role !== 'system' && m.role !== 'developer')
        .map((m) => ({ role: m.role === 'assistant' ? 'model' : 'user', parts: [{ text: m.content }] }));
      // The call's deadline is ours, cleared when it answers: with `httpOptions.timeout` the SDK
      // leaves its timer armed after a success (the caller owns the response), holding each answered
      // call's request for the whole timeout (60 s: tens of thousands of calls at 1,000 a second; the
      // Gemini dispatcher held twice the OpenAI one's RSS in bench:e2e).
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new Error('the call timed out')), req.timeoutMs);
      const onAbort = () => deadline.abort(req.signal?.reason);
      if (req.signal?.aborted) deadline.abort(req.signal.reason);
      else req.signal?.addEventListener('abort', onAbort, { once: true });
      const config: GenerateContentConfig = { abortSignal: deadline.signal };
      if (system.length > 0) config.systemInstruction = system.join('\n');
      if (req.maxTokens != null) config.maxOutputTokens = req.maxTokens;
      if (req.temperature != null) config.temperature = req.temperature;
      if (req.topP != null) config.topP = req.topP;
      if (req.stop != null) config.stopSequences = req.stop;
      if (req.seed != null) config.seed = req.seed;
      if (req.responseFormat?.['type'] === 'json_object' || req.responseFormat?.['type'] === 'json_schema') {
        config.responseMimeType = 'application/json';
      }
      const started = performance.now();
      try {
        const res = await ai.models.generateContent({ model: req.model, contents, config });
        const u = res.usageMetadata;
        return {
          text: res.text ?? '',
          finishReason: res.candidates?.[0]?.finishReason ?? null,
          usage: {
            promptTokens: u?.promptTokenCount ?? 0,
            completionTokens: u?.candidatesTokenCount ?? 0,
            totalTokens: u?.totalTokenCount ?? 0,
          },
          model: res.modelVersion ?? req.model,
          latencyMs: Math.round(performance.now() - started),
          body: JSON.stringify({
            candidates: res.candidates,
            usageMetadata: res.usageMetadata,
            modelVersion: res.modelVersion,
          }),
          rate: {},
        };
      } catch (err) {
        throw classifyGeminiError(err);
      } finally {
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
      }
    },
  };
}
