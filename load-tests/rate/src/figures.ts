import type { LedgerRow } from '@sluice/provider-sim';

export type Dimension = 'rpm' | 'tpm';

export interface Phase {
  /** ms after the contender's first request */
  fromMs: number;
  toMs: number;
  /** The limit of the binding dimension in force, per minute (after the external share). */
  limit: number;
}

export interface PhaseFigures {
  fromS: number;
  toS: number;
  limitPerMinute: number;
  /** Admitted units of the binding dimension / what the limit allowed, after `settleMs`. */
  utilization: number;
  /** Seconds from the phase's start until the admitted rate is within the band and stays there; null: never. */
  convergeS: number | null;
}

export interface Figures {
  requests: number;
  admitted: number;
  rateLimited: number;
  rateLimitedPer10k: number;
  faults: number;
  phases: PhaseFigures[];
  /** Admitted units per second, one point per second from the first request. */
  series: number[];
}

/** Units of the binding dimension a ledger row takes when admitted. */
function units(row: LedgerRow, dim: Dimension): number {
  return dim === 'rpm' ? 1 : row.cost;
}

/**
 * Figures of one contender from the simulator's ledger rows of its key: 1 s buckets of admitted
 * units, utilization of each phase after it settles, seconds to converge after each change.
 */
export function figures(
  rows: LedgerRow[],
  o: {
    dim: Dimension;
    t0: number;
    phases: Phase[];
    settleMs: number;
    band?: [number, number];
    /**
     * The simulator's fixed window, whose turns fall on whole multiples of it in its clock (the
     * ledger's): each phase is then measured over the whole windows in it after it settles.
     */
    fixedWindowMs?: number;
  },
): Figures {
  const band = o.band ?? [0.9, 1.03];
  const end = Math.max(...o.phases.map((p) => p.toMs));
  const seconds = Math.ceil(end / 1_000);
  const series = new Array<number>(seconds).fill(0);
  const rejected = new Array<number>(seconds).fill(0);
  let admitted = 0;
  let rateLimited = 0;
  let faults = 0;
  let requests = 0;
  const admissions: Array<{ at: number; units: number }> = [];
  for (const r of rows) {
    const at = r.t - o.t0;
    if (at < 0 || at >= end) continue;
    requests++;
    const s = Math.floor(at / 1_000);
    if (r.outcome === 'admitted') {
      admitted++;
      series[s]! += units(r, o.dim);
      admissions.push({ at, units: units(r, o.dim) });
    } else if (r.outcome === 'rejected' && ['rpm', 'tpm', 'rpd'].includes(r.reason)) {
      rateLimited++;
      rejected[s]!++;
    } else if (r.outcome === 'fault') faults++;
  }
  const phases = o.phases.map((p): PhaseFigures => {
    const perSecond = p.limit / 60;
    const from = Math.ceil((p.fromMs + o.settleMs) / 1_000);
    const to = Math.floor(p.toMs / 1_000);
    let sum = 0;
    for (let s = from; s < to; s++) sum += series[s]!;
    let utilization = to > from ? sum / (perSecond * (to - from)) : 0;
    const w = o.fixedWindowMs;
    if (w !== undefined) {
      // Whole windows: a lane that spends each window's budget in its first second admits all of
      // it, and a span cut at a whole second counted a window whose burst fell just before it
      // as nearly empty (0.82 of the limit for 0.99 over whole windows).
      const turn = (ms: number, up: boolean) => (up ? Math.ceil : Math.floor)((ms + o.t0) / w) * w - o.t0;
      const a = turn(p.fromMs + o.settleMs, true);
      const b = turn(p.toMs, false);
      const inSpan = admissions.filter((x) => x.at >= a && x.at < b).reduce((n, x) => n + x.units, 0);
      utilization = b > a ? inSpan / ((perSecond * (b - a)) / 1_000) : 0;
    }
    // Converged: from this second on, every 2 s window is within the band of the limit.
    let convergeS: number | null = null;
    const first = Math.floor(p.fromMs / 1_000);
    for (let s = first; s + 1 < to && convergeS === null; s++) {
      let ok = true;
      for (let w = s; w + 1 < to; w++) {
        const rate = (series[w]! + series[w + 1]!) / 2 / perSecond;
        if (rate < band[0] || rate > band[1]) {
          ok = false;
          break;
        }
      }
      if (ok) convergeS = s - p.fromMs / 1_000;
    }
    return {
      fromS: p.fromMs / 1_000,
      toS: p.toMs / 1_000,
      limitPerMinute: p.limit,
      utilization: round(utilization, 3),
      convergeS: convergeS === null ? null : round(Math.max(0, convergeS), 1),
    };
  });
  return {
    requests,
    admitted,
    rateLimited,
    rateLimitedPer10k: requests ? round((rateLimited / requests) * 10_000, 1) : 0,
    faults,
    phases,
    series,
  };
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
