import type { Attempt } from '@sluice/schemas';

/** Kafka headers that travel with a prompt between the lane and the delay topics. */
export const headers = {
  /** When a delayed record is due (ms since the epoch). */
  dueAt: 'sluice-due-at',
  /** The lane topic and partition a delayed record goes back to. */
  lane: 'sluice-lane',
  lanePartition: 'sluice-lane-partition',
  /** JSON array of the prompt's attempts so far. */
  attempts: 'sluice-attempts',
} as const;

type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;

export function headerText(h: Record<string, HeaderValue> | undefined, name: string): string | undefined {
  const v = h?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.toString();
}

export function readAttempts(h: Record<string, HeaderValue> | undefined): Attempt[] {
  const text = headerText(h, headers.attempts);
  if (!text) return [];
  try {
    return JSON.parse(text) as Attempt[];
  } catch {
    return [];
  }
}

/** The delay tiers, shortest first: a record waits in the shortest tier at least as long as its wait. */
export const delayTiers: ReadonlyArray<{ topic: string; ms: number }> = [
  { topic: 'sluice.delay.5s', ms: 5_000 },
  { topic: 'sluice.delay.30s', ms: 30_000 },
  { topic: 'sluice.delay.2m', ms: 120_000 },
  { topic: 'sluice.delay.10m', ms: 600_000 },
];

export function tierFor(waitMs: number): string {
  return (delayTiers.find((t) => t.ms >= waitMs) ?? delayTiers[delayTiers.length - 1]!).topic;
}

/** Backoff for transient failures: 1 s, 2 s, 4 s, ... capped at 5 min, with ±20 % jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(300_000, 1_000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}
