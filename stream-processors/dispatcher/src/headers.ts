import type { Attempt } from '@sluice/schemas';
import { headerText, promptHeaders } from '@sluice/kafka';

type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;

/** The attempts a record's header says its prompt has had so far (none when absent or unreadable). */
export function readAttempts(h: Record<string, HeaderValue> | undefined): Attempt[] {
  const text = headerText(h, promptHeaders.attempts);
  if (!text) return [];
  try {
    return JSON.parse(text) as Attempt[];
  } catch {
    return [];
  }
}

/** Backoff for transient failures: 1 s, 2 s, 4 s, ... capped at 5 min, with ±20 % jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(300_000, 1_000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}
