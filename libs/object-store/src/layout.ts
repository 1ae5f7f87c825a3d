/**
 * Where a job's results live in the store, under `<prefix><jobId>/`:
 *   results/part-<partition>-<first offset>-<last offset>.jsonl   results, OpenAI batch output lines
 *   errors/part-<partition>-<first offset>-<last offset>.jsonl    errors, the same shape
 *   _index/<partition>-<first offset>.json                        the commit record of a part
 *   _rollup/<seq>.json                                            the indexes so far in one object (job-index.ts)
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
/** An index object's name under `_index/`: the part's partition and first offset, zero-padded to sort. */
export const indexTag = (partition: number, start: number) =>
  `${String(partition).padStart(3, '0')}-${String(start).padStart(12, '0')}.json`;
export const manifestName = (prefix: string, jobId: string) => `${jobObjectPrefix(prefix, jobId)}manifest.json`;
