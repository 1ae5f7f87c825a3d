import type { PromptOutcome } from '@sluice/schemas';

/**
 * One line of a results file, in the OpenAI batch output shape, so tools that read OpenAI batch
 * output read Sluice's: {"id","custom_id","response":{"status_code","body"},"error"}; row_index is
 * Sluice's addition (the 0-based row of the job's input).
 */
export function resultLine(o: PromptOutcome): string {
  const r = o.result!;
  let body: unknown;
  try {
    body = r.body ? JSON.parse(r.body) : undefined;
  } catch {
    body = undefined;
  }
  body ??= {
    model: r.model,
    choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finishReason }],
    usage: {
      prompt_tokens: r.usage.promptTokens,
      completion_tokens: r.usage.completionTokens,
      total_tokens: r.usage.totalTokens,
    },
  };
  return JSON.stringify({
    id: o.promptId,
    custom_id: o.customId,
    row_index: o.rowIndex,
    response: { status_code: 200, body },
    error: null,
  });
}

/** One line of an errors file: the same shape, with the error's code, message and attempts. */
export function errorLine(o: PromptOutcome): string {
  const e = o.error ?? {
    code: o.status === 'cancelled' ? 'JOB_CANCELLED' : 'UNKNOWN',
    message: o.status,
    lineNumber: null,
  };
  return JSON.stringify({
    id: o.promptId,
    custom_id: o.customId,
    row_index: o.rowIndex,
    response: null,
    error: { code: e.code, message: e.message, line: e.lineNumber, attempts: o.attempts },
  });
}

/** An outcome from a bad input row (it never reached a provider). */
export function isInputError(o: PromptOutcome): boolean {
  return o.status === 'failed' && o.attempts === 0 && (o.error?.code.startsWith('INPUT_') ?? false);
}
