import type { Dialect } from './config.js';

export type Outcome = 'admitted' | 'rejected' | 'fault' | 'invalid';

/**
 * One row per request the simulator received: the ground truth that benchmarks compute every
 * ratio from, never from a client's view.
 */
export interface LedgerRow {
  seq: number;
  /** Arrival, ms since the simulator started or was last reset. */
  t: number;
  key: string;
  model: string;
  dialect: Dialect;
  outcome: Outcome;
  /**
   * ok, slow_body, malformed (admitted); rpm, tpm, rpd, too_large, quota (rejected);
   * error_500, outage, overloaded, timeout, reset (fault); unauthorized, bad_request, unknown_key (invalid).
   */
  reason: string;
  /** HTTP status sent; 0 when none was (timeout, reset). */
  status: number;
  /** Provider cost in tokens: prompt + max_tokens (prompt only for Gemini). */
  cost: number;
  promptTokens: number;
  completionTokens: number;
  /** Limits in force at arrival; null where unlimited. */
  limitRpm: number | null;
  limitTpm: number | null;
  latencyMs: number;
}

export interface SeriesPoint {
  t: number;
  requests: number;
  admitted: number;
  rejected: number;
  faults: number;
  admittedCost: number;
  limitRpm: number | null;
  limitTpm: number | null;
}

export interface KeyModelStats {
  key: string;
  model: string;
  requests: number;
  byOutcome: Record<string, number>;
  byReason: Record<string, number>;
  admittedCost: number;
  promptTokens: number;
  completionTokens: number;
  /** Rejections (rate_limited only) per 10,000 requests. */
  rateLimitedPer10k: number;
  series: SeriesPoint[];
}

export class Ledger {
  private rows: LedgerRow[] = [];
  private count = 0;
  private readonly perKey = new Map<string, { requests: number; admitted: number }>();

  /**
   * @param keepRows false: counts per key only (requestsOf), no row a request: a run of millions
   * of calls (bench:e2e) would hold a row each and walk them all for every count.
   */
  constructor(private readonly keepRows = true) {}

  get size(): number {
    return this.count;
  }

  /** Requests of one key so far, and how many of them were admitted. */
  requestsOf(key: string): { requests: number; admitted: number } {
    return { ...(this.perKey.get(key) ?? { requests: 0, admitted: 0 }) };
  }

  /** Appends a copy of `row`, numbered. Built field by field: one object shape for every row. */
  append(row: Omit<LedgerRow, 'seq'>): void {
    let k = this.perKey.get(row.key);
    if (!k) this.perKey.set(row.key, (k = { requests: 0, admitted: 0 }));
    k.requests++;
    if (row.outcome === 'admitted') k.admitted++;
    if (!this.keepRows) return void this.count++;
    this.rows.push({
      seq: this.count++,
      t: row.t,
      key: row.key,
      model: row.model,
      dialect: row.dialect,
      outcome: row.outcome,
      reason: row.reason,
      status: row.status,
      cost: row.cost,
      promptTokens: row.promptTokens,
      completionTokens: row.completionTokens,
      limitRpm: row.limitRpm,
      limitTpm: row.limitTpm,
      latencyMs: row.latencyMs,
    });
  }

  clear(): void {
    this.rows = [];
    this.count = 0;
    this.perKey.clear();
  }

  since(seq: number): LedgerRow[] {
    return this.rows.slice(Math.max(0, seq));
  }

  /** Aggregates per (key, model), with a time series in buckets of `bucketMs`. */
  stats(bucketMs = 1_000): KeyModelStats[] {
    const groups = new Map<string, KeyModelStats>();
    const series = new Map<string, Map<number, SeriesPoint>>();
    for (const r of this.rows) {
      const id = `${r.key}\u0000${r.model}`;
      let g = groups.get(id);
      if (!g) {
        g = {
          key: r.key,
          model: r.model,
          requests: 0,
          byOutcome: {},
          byReason: {},
          admittedCost: 0,
          promptTokens: 0,
          completionTokens: 0,
          rateLimitedPer10k: 0,
          series: [],
        };
        groups.set(id, g);
        series.set(id, new Map());
      }
      g.requests++;
      g.byOutcome[r.outcome] = (g.byOutcome[r.outcome] ?? 0) + 1;
      g.byReason[r.reason] = (g.byReason[r.reason] ?? 0) + 1;
      if (r.outcome === 'admitted') {
        g.admittedCost += r.cost;
        g.promptTokens += r.promptTokens;
        g.completionTokens += r.completionTokens;
      }
      const bucket = Math.floor(r.t / bucketMs) * bucketMs;
      const points = series.get(id)!;
      let p = points.get(bucket);
      if (!p) {
        p = {
          t: bucket,
          requests: 0,
          admitted: 0,
          rejected: 0,
          faults: 0,
          admittedCost: 0,
          limitRpm: r.limitRpm,
          limitTpm: r.limitTpm,
        };
        points.set(bucket, p);
      }
      p.requests++;
      if (r.outcome === 'admitted') {
        p.admitted++;
        p.admittedCost += r.cost;
      } else if (r.outcome === 'rejected') p.rejected++;
      else if (r.outcome === 'fault') p.faults++;
      p.limitRpm = r.limitRpm;
      p.limitTpm = r.limitTpm;
    }
    return [...groups.entries()].map(([id, g]) => {
      const limited = (g.byReason['rpm'] ?? 0) + (g.byReason['tpm'] ?? 0) + (g.byReason['rpd'] ?? 0);
      g.rateLimitedPer10k = g.requests === 0 ? 0 : (limited / g.requests) * 10_000;
      g.series = [...series.get(id)!.values()].sort((a, b) => a.t - b.t);
      return g;
    });
  }
}
