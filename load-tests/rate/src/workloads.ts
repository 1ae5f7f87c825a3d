import type { Accounting, Faults, KeyConfig, RateHeaderStyle } from '@sluice/provider-sim';
import type { Dimension } from './figures.js';

export interface Workload {
  name: string;
  quick: boolean;
  what: string;
  dialect: KeyConfig['dialect'];
  /** The binding dimension, whose utilization is reported. */
  dim: Dimension;
  /** Limits per phase; the first from the start, each next at `atMs` after the first request. */
  phases: Array<{ atMs: number; rpm: number; tpm: number }>;
  durationMs: number;
  /** Characters of prompt text per request (uniform in the range) and max_tokens. */
  prompt: { chars: [number, number]; maxTokens: number };
  faults?: Partial<Faults>;
  /** Sluice replicas on the one key (peers run once). @default 1 */
  replicas?: number;
  /** A client outside every contender using this share of each limit. */
  externalShare?: number;
  /** How much rate the provider's buckets hold. @default 1000 (short, as time is compressed) */
  burstWindowMs?: number;
  /** Run only when named in --only (too long for the suite's 10 minutes). */
  optional?: boolean;
  /** How the provider counts its limits. @default "bucket" */
  accounting?: Accounting;
  /** Which rate headers answers carry. @default the dialect's */
  rateHeaders?: RateHeaderStyle;
}

// Time is compressed: limits are high and phases short, so a workload runs in tens of seconds.
// Prompts of 200-600 characters and max_tokens 100 cost about 200 tokens each.
const prompt = { chars: [200, 600] as [number, number], maxTokens: 100 };

export function workloads(quick: boolean): Workload[] {
  const d = (ms: number) => (quick ? Math.round(ms * 0.6) : ms);
  const all: Workload[] = [
    {
      name: 'steady-tpm',
      quick: true,
      what: 'OpenAI headers; tokens per minute bind (600,000 TPM ≈ 50 requests/s; RPM 60,000)',
      dialect: 'openai',
      dim: 'tpm',
      phases: [{ atMs: 0, rpm: 60_000, tpm: 600_000 }],
      durationMs: d(25_000),
      prompt,
    },
    {
      name: 'steady-rpm',
      quick: true,
      what: 'OpenAI headers; requests per minute bind (2,400 RPM = 40/s; TPM 6,000,000)',
      dialect: 'openai',
      dim: 'rpm',
      phases: [{ atMs: 0, rpm: 2_400, tpm: 6_000_000 }],
      durationMs: d(25_000),
      prompt,
    },
    {
      name: 'halve-double',
      quick: false,
      what: 'OpenAI headers; TPM 600,000, halved at 15 s, doubled back at 30 s',
      dialect: 'openai',
      dim: 'tpm',
      phases: [
        { atMs: 0, rpm: 60_000, tpm: 600_000 },
        { atMs: 15_000, rpm: 60_000, tpm: 300_000 },
        { atMs: 30_000, rpm: 60_000, tpm: 600_000 },
      ],
      durationMs: 45_000,
      prompt,
    },
    {
      name: 'azure',
      quick: false,
      what: "Azure's remaining-only headers over a 10 s window; TPM 600,000",
      dialect: 'azure',
      dim: 'tpm',
      phases: [{ atMs: 0, rpm: 60_000, tpm: 600_000 }],
      durationMs: 30_000,
      prompt,
      burstWindowMs: 10_000,
    },
    {
      name: 'gemini',
      quick: false,
      what: 'Gemini: no rate headers, QuotaFailure in 429 bodies; 2,400 RPM',
      dialect: 'gemini',
      dim: 'rpm',
      phases: [{ atMs: 0, rpm: 2_400, tpm: 60_000_000 }],
      // Long enough for more than 1,000 requests: nothing states the limit before the first 429,
      // and that one 429 alone is 16 per 10,000 of a 20 s run's 620 (the goal is at most 10).
      durationMs: 30_000,
      prompt,
    },
    {
      // The gemini workload's 30 s hold the first 429 (nothing states the limit before it) and the
      // first probe above it: 2 in about 1,100 requests. Over a longer run the probes grow apart
      // (10, 20, 40, 80, 160 s), which is what a backfill of hours sees.
      name: 'gemini-long',
      quick: false,
      optional: true,
      what: 'Gemini as above, for 5 minutes: 429s per 10k once the probes above the limit have grown apart',
      dialect: 'gemini',
      dim: 'rpm',
      phases: [{ atMs: 0, rpm: 2_400, tpm: 60_000_000 }],
      durationMs: 300_000,
      prompt,
    },
    {
      name: 'no-headers',
      quick: false,
      what: 'an OpenAI-compatible server with no rate headers (its 429 message states the limit); 2,400 RPM, doubled at 20 s',
      dialect: 'compatible',
      dim: 'rpm',
      phases: [
        { atMs: 0, rpm: 2_400, tpm: 60_000_000 },
        { atMs: 20_000, rpm: 4_800, tpm: 60_000_000 },
      ],
      // Probing at about ×1.1 per clean 10 s finds a doubling in about 80 s.
      durationMs: 110_000,
      prompt,
    },
    {
      name: 'faults',
      quick: false,
      what: 'OpenAI headers, TPM-bound; 1 % 500s, 0.5 % timeouts and a 10 s outage (503s) about 10 s in',
      dialect: 'openai',
      dim: 'tpm',
      phases: [{ atMs: 0, rpm: 60_000, tpm: 600_000 }],
      durationMs: 35_000,
      prompt,
      faults: { errorRate: 0.01, timeoutRate: 0.005 },
    },
    {
      name: 'replicas-external',
      quick: false,
      what: 'three Sluice replicas on one key, TPM 600,000, another client taking 20 % of it',
      dialect: 'openai',
      dim: 'tpm',
      phases: [{ atMs: 0, rpm: 60_000, tpm: 600_000 }],
      durationMs: 30_000,
      prompt,
      replicas: 3,
      externalShare: 0.2,
    },
    // Window accountings (RATE-LIMITS.md): gateways count in fixed or sliding windows and state
    // the limit in OpenAI's headers; the windows are 10 s here, as time is compressed.
    ...(['fixed', 'sliding-log', 'sliding-counter'] as const).map((accounting): Workload => ({
      name: `${accounting}-10s`,
      quick: accounting === 'fixed',
      what: `OpenAI headers over a ${accounting} 10 s window; 2,400 RPM bind`,
      dialect: 'openai',
      dim: 'rpm',
      phases: [{ atMs: 0, rpm: 2_400, tpm: 60_000_000 }],
      durationMs: d(40_000),
      prompt,
      accounting,
      burstWindowMs: 10_000,
    })),
  ];
  return all.filter((w) => !quick || w.quick);
}

/** The rate matrix's axes: how the provider counts, what changes mid-run, what it says. */
export const matrixAccountings = [
  { name: 'bucket-10s', accounting: 'bucket', windowMs: 10_000 },
  { name: 'fixed-1s', accounting: 'fixed', windowMs: 1_000 },
  { name: 'fixed-10s', accounting: 'fixed', windowMs: 10_000 },
  { name: 'sliding-log-10s', accounting: 'sliding-log', windowMs: 10_000 },
  { name: 'sliding-counter-10s', accounting: 'sliding-counter', windowMs: 10_000 },
] as const;
export const matrixScenarios = ['steady', 'halved', 'doubled', 'other-half'] as const;
/** full: OpenAI's limit, remaining and reset; remaining: Azure's remaining only; 429: no header. */
export const matrixHeaders = [
  { name: 'full', style: 'openai' },
  { name: 'remaining', style: 'remaining' },
  { name: '429-only', style: 'none' },
] as const;

/** Rows of the quick matrix (about 4 minutes): each accounting steady with full headers, and one of each other kind. */
const quickRows = new Set([
  'bucket-10s/steady/full',
  'fixed-1s/steady/remaining',
  'fixed-10s/steady/full',
  'fixed-10s/halved/full',
  'sliding-log-10s/steady/full',
  'sliding-counter-10s/other-half/full',
  'fixed-10s/steady/429-only',
]);

/**
 * A matrix row's length: three windows a phase (each measured from one window after its start,
 * so over two), at least 20 s a phase; `--quick`, 15 s a phase. A phase measured over one 10 s
 * window counted a whole window's budget or missed it by where the turn fell (a fixed 10 s window
 * steady with remaining only read 0.998, 0.801 and 0.794 in three runs of 40 s rows at code that
 * does the same for it); over half of one, 0.44 or 1.39.
 */
export function matrixRowMs(windowMs: number, quick: boolean): number {
  return quick ? 30_000 : 2 * Math.max(20_000, 3 * windowMs);
}

/**
 * Every accounting × scenario × header style, RPM-bound (2,400 RPM = 40 a second; a change at
 * half time). The sustainable rate is the limit less the other client's share.
 */
export function matrix(quick: boolean): Workload[] {
  const out: Workload[] = [];
  for (const a of matrixAccountings)
    for (const scenario of matrixScenarios)
      for (const h of matrixHeaders) {
        const name = `${a.name}/${scenario}/${h.name}`;
        if (quick && !quickRows.has(name)) continue;
        const durationMs = matrixRowMs(a.windowMs, quick);
        const changeAt = durationMs / 2;
        const base = { atMs: 0, rpm: 2_400, tpm: 60_000_000 };
        const phases =
          scenario === 'halved'
            ? [base, { ...base, atMs: changeAt, rpm: 1_200 }]
            : scenario === 'doubled'
              ? [base, { ...base, atMs: changeAt, rpm: 4_800 }]
              : [base];
        out.push({
          name,
          quick: true,
          what: `${a.accounting} over ${a.windowMs / 1_000} s, ${scenario}, ${h.name} headers`,
          dialect: 'openai',
          dim: 'rpm',
          phases,
          durationMs,
          prompt,
          accounting: a.accounting,
          rateHeaders: h.style,
          burstWindowMs: a.windowMs,
          externalShare: scenario === 'other-half' ? 0.5 : undefined,
        });
      }
  return out;
}
