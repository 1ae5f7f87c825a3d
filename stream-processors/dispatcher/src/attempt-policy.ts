import type { ErrorCode } from '@sluice/errors';
import type { FailureKind } from '@sluice/providers';

/** 429s one prompt may wait out in place before it goes to the delay topics. */
export const maxRateLimitedWaits = 20;
/** The longest a key or lane stays parked before a call tries the provider again. */
export const maxParkMs = 3_600_000;

/** What failed: a provider's refusal or a transient fault, as the adapter classified it. */
export interface Failure {
  kind: FailureKind;
  retryable: boolean;
  retryAfterMs: number | undefined;
  code: ErrorCode;
}

/** Where the prompt stands when its call failed. */
export interface AttemptState {
  /** The attempt that failed (1 for a prompt's first call). */
  attempt: number;
  /** 429s this prompt has waited out in place, this one included. */
  waits: number;
  /** Whether another key of the pool is not parked. */
  otherKeys: boolean;
}

export interface AttemptRules {
  /** Calls a prompt may fail (429s waited out in place aside) before it fails for good. */
  maxAttempts: number;
  /** The wait before a transient failure's next attempt. */
  backoffMs(attempt: number): number;
}

export type Decision =
  /** Wait for the key's bucket again, keeping the call slot (a 429: the limit's doing, not the prompt's). */
  | { kind: 'wait-here' }
  /** Park this key (its account cannot serve) and try the prompt on another. */
  | { kind: 'next-key'; parkMs: number }
  /** Through a delay topic: tried again after `waitMs`. */
  | { kind: 'delay'; waitMs: number }
  /** The prompt's one error outcome. */
  | { kind: 'fail'; code: ErrorCode };

/**
 * What becomes of a prompt whose call failed: no I/O, no clock, so that every case is a row of a
 * table (attempt-policy.unit.test.ts).
 */
export function decide(f: Failure, s: AttemptState, rules: AttemptRules): Decision {
  if (f.kind === 'rate_limited' && s.waits <= maxRateLimitedWaits) return { kind: 'wait-here' };
  if (f.kind === 'quota_exhausted' && s.otherKeys) return { kind: 'next-key', parkMs: maxParkMs };
  // 429s waited out in place do not use up the prompt's attempts.
  if (f.retryable && s.attempt - Math.min(s.waits, maxRateLimitedWaits) < rules.maxAttempts) {
    const waitMs = Math.max(f.retryAfterMs ?? 0, f.kind === 'transient' ? rules.backoffMs(s.attempt) : 1_000);
    return { kind: 'delay', waitMs };
  }
  return { kind: 'fail', code: f.retryable ? 'ATTEMPTS_EXHAUSTED' : f.code };
}
