import { promptId } from '@sluice/kafka';
import type { Job, Parameters, PromptRequest } from '@sluice/schemas';
import type { InputItem } from '../input/reader.js';
import type { PromptRow, RowError } from '../input/row.js';

export interface JobParametersInput {
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  responseFormat?: Record<string, unknown>;
  stop?: string[];
  seed?: number;
}

/**
 * A valid row of an upload as the prompt request its lane carries: the row's model (one the
 * provider serves) or the job's, the job's parameters with the row's overrides (range-checked
 * here, with the row's line, not by the provider after a wait in the lane). Pure.
 */
export function toPromptRequest(
  job: Job,
  item: InputItem & { row: PromptRow },
  rowIndex: number,
  defaults: JobParametersInput,
  models: string[],
  submittedAt: number,
): PromptRequest | RowError {
  const row = item.row;
  const model = row.model ?? job.model;
  if (row.model !== null && !models.includes('*') && !models.includes(row.model)) {
    return {
      code: 'INPUT_UNKNOWN_MODEL',
      message: `model "${row.model}" is not a ${job.provider} model (${models.join(', ')})`,
    };
  }
  const parameters = mergeParameters(defaults, row.overrides);
  if ('code' in parameters) return parameters;
  return {
    jobId: job.jobId,
    promptId: promptId(job.jobId, rowIndex),
    rowIndex,
    tenant: job.tenant,
    provider: job.provider,
    model,
    messages: row.messages,
    parameters,
    attempt: 0,
    customId: row.customId,
    priority: job.priority,
    submittedAt,
    source: 'http',
  };
}

export function mergeParameters(defaults: JobParametersInput, o: Record<string, unknown>): Parameters | RowError {
  const num = (k: string, v: unknown, integer = false, range?: [number, number]): number | RowError | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      return {
        code: 'INPUT_WRONG_TYPE',
        message: `${k} must be ${integer ? 'a whole number' : 'a number'}, got ${JSON.stringify(v)}`,
      };
    }
    // Refused here with the row's line, not by the provider as a 400 after a wait in the lane.
    if (range && (v < range[0] || v > range[1])) {
      return { code: 'INPUT_OUT_OF_RANGE', message: `${k} must be from ${range[0]} to ${range[1]}, got ${v}` };
    }
    return v;
  };
  const maxTokens = num('max_tokens', o['max_tokens'] ?? o['max_completion_tokens'], true, [1, 1_000_000]);
  const temperature = num('temperature', o['temperature'], false, [0, 2]);
  const topP = num('top_p', o['top_p'], false, [0, 1]);
  const seed = num('seed', o['seed'], true);
  for (const v of [maxTokens, temperature, topP, seed]) if (typeof v === 'object') return v;
  let stop: string[] | null = defaults.stop ?? null;
  if (o['stop'] !== undefined && o['stop'] !== null) {
    const s = o['stop'];
    if (typeof s === 'string') stop = [s];
    else if (Array.isArray(s) && s.every((x) => typeof x === 'string')) stop = s;
    else return { code: 'INPUT_WRONG_TYPE', message: 'stop must be a string or an array of strings' };
  }
  const rf = o['response_format'] ?? defaults.responseFormat;
  return {
    temperature: (temperature as number | undefined) ?? defaults.temperature ?? null,
    topP: (topP as number | undefined) ?? defaults.topP ?? null,
    maxTokens: (maxTokens as number | undefined) ?? defaults.maxTokens ?? null,
    responseFormat: rf === undefined ? null : JSON.stringify(rf),
    stop,
    seed: (seed as number | undefined) ?? defaults.seed ?? null,
    extra: null,
  };
}
