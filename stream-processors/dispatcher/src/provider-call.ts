import type { ChatRequest, ChatResult } from '@sluice/providers';
import type { PromptOutcome, PromptRequest } from '@sluice/schemas';

/** The provider call for a prompt request. */
export function chatRequest(request: PromptRequest, timeoutMs: number): ChatRequest {
  const p = request.parameters;
  return {
    model: request.model,
    messages: request.messages,
    maxTokens: p.maxTokens,
    temperature: p.temperature,
    topP: p.topP,
    stop: p.stop,
    seed: p.seed,
    responseFormat: p.responseFormat ? (JSON.parse(p.responseFormat) as Record<string, unknown>) : null,
    timeoutMs,
  };
}

export function resultOf(r: ChatResult): PromptOutcome['result'] {
  return {
    model: r.model,
    text: r.text,
    finishReason: r.finishReason,
    usage: r.usage,
    latencyMs: r.latencyMs,
    body: r.body,
  };
}

export function remainingOf(rate: ChatResult['rate']) {
  return {
    requests: rate.remainingRequests,
    tokens: rate.remainingTokens,
    resetRequestsMs: rate.resetRequestsMs,
    resetTokensMs: rate.resetTokensMs,
  };
}
