import { basename } from 'node:path';
import { indexPrefix, jobObjectPrefix, type PartIndex } from './layout.js';
import { RowSet } from './row-set.js';
import type { ObjectStore } from './types.js';

/** A committed part without its row list. */
export type PartSummary = Omit<PartIndex, 'rows'>;

/**
 * A roll-up of a job's part indexes, `_rollup/<seq>.json`: the parts it covers (their index names,
 * their summaries) and the union of their rows as a bitset. A job of a million prompts has
 * thousands of parts; with roll-ups a reader (a job writer starting, `GET /results`) reads the
 * newest roll-up and only the indexes written after it, not one object per part.
 *
 * Part indexes stay the commit record: a roll-up only repeats what immutable indexes say, so any
 * roll-up (of any writer, of any age) is a true summary of the indexes it names, and a reader
 * that finds none, or one it cannot read, reads the indexes themselves.
 */
export interface IndexRollup {
  version: 1;
  /** Index object names (the part after `_index/`) this roll-up summarizes. */
  covers: string[];
  parts: PartSummary[];
  /** Base64 of the covered parts' rows (RowSet.toBuffer()). */
  rows: string;
}

export const rollupPrefix = (prefix: string, jobId: string) => `${jobObjectPrefix(prefix, jobId)}_rollup/`;
export const rollupName = (prefix: string, jobId: string, seq: number) =>
  `${rollupPrefix(prefix, jobId)}${String(seq).padStart(9, '0')}.json`;
/** The sequence number in a roll-up's name, or NaN. */
export const rollupSeq = (name: string) => Number(basename(name, '.json'));

export interface JobIndex {
  /** Committed parts in partition and offset order. */
  parts: PartSummary[];
  /** Every committed row (only when asked for with `rows: true`). */
  rows: RowSet | undefined;
  /** Sequence number of the roll-up read (0: none). */
  rollupSeq: number;
  /** Index names the roll-up read covers. */
  covered: Set<string>;
  /** Object reads it took: lists and gets (GCS charges each). */
  requests: { lists: number; gets: number };
}

/** A part's index without its row list. */
export const partSummary = (i: PartIndex | PartSummary): PartSummary => ({
  partition: i.partition,
  start: i.start,
  end: i.end,
  results: i.results,
  errors: i.errors,
  counts: i.counts,
  tokens: i.tokens,
  firstCompletedAt: i.firstCompletedAt,
  lastCompletedAt: i.lastCompletedAt,
});

/**
 * A job's committed parts: the newest readable roll-up, then each index it does not cover. With
 * `rows`, also every committed row (what a job writer needs to go on after a restart).
 */
export async function readJobIndex(
  store: ObjectStore,
  prefix: string,
  jobId: string,
  options: { rows?: boolean } = {},
): Promise<JobIndex> {
  const requests = { lists: 0, gets: 0 };
  let rows = options.rows ? new RowSet() : undefined;
  const parts: PartSummary[] = [];
  let covered = new Set<string>();
  let seq = 0;
  requests.lists++;
  for (const name of (await store.list(rollupPrefix(prefix, jobId))).reverse()) {
    requests.gets++;
    const raw = await store.get(name);
    if (!raw) continue; // deleted since listed: an older one serves
    const rollup = JSON.parse(raw.toString()) as IndexRollup;
    covered = new Set(rollup.covers);
    parts.push(...rollup.parts);
    if (rows) rows = RowSet.fromBuffer(Buffer.from(rollup.rows, 'base64'));
    seq = rollupSeq(name);
    break;
  }
  const dir = indexPrefix(prefix, jobId);
  requests.lists++;
  for (const name of await store.list(dir)) {
    if (covered.has(name.slice(dir.length))) continue;
    requests.gets++;
    const raw = await store.get(name);
    if (!raw) continue;
    const index = JSON.parse(raw.toString()) as PartIndex;
    parts.push(partSummary(index));
    if (rows) for (const r of index.rows) rows.add(r);
  }
  parts.sort((a, b) => a.partition - b.partition || a.start - b.start);
  return { parts, rows, rollupSeq: seq, covered, requests };
}
