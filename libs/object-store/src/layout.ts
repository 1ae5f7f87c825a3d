import type { ObjectStore } from './types.js';

/**
 * Where a job's results live in the store, under `<prefix><jobId>/`:
 *   results/part-<partition>-<first offset>-<last offset>.jsonl   results, OpenAI batch output lines
 *   errors/part-<partition>-<first offset>-<last offset>.jsonl    errors, the same shape
 *   _index/<partition>-<first offset>.json                        the commit record of a part
 *   manifest.json                                                 written once every prompt is accounted for
 * A part file counts only once an index names it; the sink deletes unnamed ones at the end.
 */
export interface PartFile {
  name: string;
  records: number;
  bytes: number;
  sha256: string;
}

export interface Counts {
  succeeded: number;
  /** Failed at a provider or in the pipeline (input errors are counted apart). */
  failed: number;
  cancelled: number;
  /** Bad input rows. */
  invalid: number;
}

export interface PartIndex {
  partition: number;
  /** First and last offset of the results partition this part covers. */
  start: number;
  end: number;
  results: PartFile | null;
  errors: PartFile | null;
  /** Row indices the part holds, results and errors alike. */
  rows: number[];
  counts: Counts;
  tokens: { prompt: number; completion: number };
  firstCompletedAt: number | null;
  lastCompletedAt: number | null;
}

export const jobObjectPrefix = (prefix: string, jobId: string) => `${prefix}${jobId}/`;
export const indexPrefix = (prefix: string, jobId: string) => `${jobObjectPrefix(prefix, jobId)}_index/`;
export const manifestName = (prefix: string, jobId: string) => `${jobObjectPrefix(prefix, jobId)}manifest.json`;

/** The committed parts of a job, in partition and offset order. */
export async function readCommittedParts(store: ObjectStore, prefix: string, jobId: string): Promise<PartIndex[]> {
  const out: PartIndex[] = [];
  for (const name of await store.list(indexPrefix(prefix, jobId))) {
    const raw = await store.get(name);
    if (raw) out.push(JSON.parse(raw.toString()) as PartIndex);
  }
  return out.sort((a, b) => a.partition - b.partition || a.start - b.start);
}
