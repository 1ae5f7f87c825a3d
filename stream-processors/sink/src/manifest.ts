import type { Job } from '@sluice/schemas';
import type { Counts, PartFile } from '@sluice/object-store';
import type { JobWriter } from './job-writer.js';

/** USD per million tokens, input and output: list prices, for an estimate only (SLUICE_PRICES overrides). */
export type PriceTable = Record<string, { input: number; output: number }>;

export const defaultPrices: PriceTable = {
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5 },
  'gemini-2.5-pro': { input: 1.25, output: 10 },
};

/** A job's final status, in the casing the job view, the manifest and the announcement share. */
export type FinalStatus = 'completed' | 'completed_with_errors' | 'failed' | 'cancelled';

export interface Manifest {
  jobId: string;
  tenant: string;
  status: FinalStatus;
  provider: string;
  model: string;
  metadata: Record<string, string>;
  counts: Counts & { total: number };
  tokens: { prompt: number; completion: number; total: number };
  /** From the price table; null for a model it does not list. */
  estimatedCostUsd: number | null;
  timings: {
    createdAt: string;
    firstResultAt: string | null;
    lastResultAt: string | null;
    finalizedAt: string;
    /** From creation to the last result. */
    durationMs: number;
  };
  outputs: {
    results: Array<PartFile & { uri: string }>;
    errors: Array<PartFile & { uri: string }>;
  };
}

export function finalStatus(job: Job, counts: Counts): FinalStatus {
  if (job.status === 'cancelled') return 'cancelled';
  const total = counts.succeeded + counts.failed + counts.cancelled + counts.invalid;
  if (counts.succeeded === total) return 'completed';
  return counts.succeeded === 0 ? 'failed' : 'completed_with_errors';
}

export function buildManifest(
  w: JobWriter,
  uri: (name: string) => string,
  prices: PriceTable,
  now = Date.now(),
): Manifest {
  const job = w.job;
  const byOrder = [...w.indexes].sort((a, b) => a.partition - b.partition || a.start - b.start);
  const files = (kind: 'results' | 'errors') =>
    byOrder.flatMap((i) => (i[kind] ? [{ ...i[kind], uri: uri(i[kind].name) }] : []));
  const price = prices[job.model];
  const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
  return {
    jobId: job.jobId,
    tenant: job.tenant,
    status: finalStatus(job, w.totals),
    provider: job.provider,
    model: job.model,
    metadata: job.metadata,
    counts: { total: w.committedRows, ...w.totals },
    tokens: { ...w.tokens, total: w.tokens.prompt + w.tokens.completion },
    estimatedCostUsd: price
      ? Math.round(((w.tokens.prompt * price.input + w.tokens.completion * price.output) / 1e6) * 1e8) / 1e8
      : null,
    timings: {
      createdAt: new Date(job.createdAt).toISOString(),
      firstResultAt: iso(w.firstCompletedAt),
      lastResultAt: iso(w.lastCompletedAt),
      finalizedAt: new Date(now).toISOString(),
      durationMs: Math.max(0, (w.lastCompletedAt ?? now) - job.createdAt),
    },
    outputs: { results: files('results'), errors: files('errors') },
  };
}
