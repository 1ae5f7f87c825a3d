import { describe, expect, it } from 'vitest';
import { decide, maxParkMs, maxRateLimitedWaits, type Decision, type Failure } from '../src/attempt-policy.js';

const failure = (kind: Failure['kind'], retryAfterMs?: number): Failure => ({
  kind,
  retryable: kind === 'rate_limited' || kind === 'transient',
  retryAfterMs,
  code: (
    {
      rate_limited: 'PROVIDER_RATE_LIMITED',
      quota_exhausted: 'PROVIDER_QUOTA_EXHAUSTED',
      request_too_large: 'PROVIDER_REQUEST_TOO_LARGE',
      transient: 'PROVIDER_TRANSIENT',
      permanent: 'PROVIDER_REJECTED',
    } as const
  )[kind],
});

const rules = { maxAttempts: 3, backoffMs: (attempt: number) => 1_000 * 2 ** (attempt - 1) };

describe('what becomes of a prompt whose call failed (decide)', () => {
  const table: Array<[string, Failure, { attempt: number; waits: number; otherKeys: boolean }, Decision]> = [
    [
      'a 429 is waited out in place',
      failure('rate_limited', 2_000),
      { attempt: 1, waits: 1, otherKeys: false },
      { kind: 'wait-here' },
    ],
    [
      'the 20th 429 still waits in place',
      failure('rate_limited'),
      { attempt: 20, waits: maxRateLimitedWaits, otherKeys: false },
      { kind: 'wait-here' },
    ],
    // Past 20 waits, a 429 goes round the delay topics; the waits did not use up its attempts.
    [
      'the 21st 429 goes to a delay topic for its wait',
      failure('rate_limited', 7_000),
      { attempt: 21, waits: 21, otherKeys: false },
      { kind: 'delay', waitMs: 7_000 },
    ],
    [
      'a 429 with no wait goes for a second',
      failure('rate_limited'),
      { attempt: 21, waits: 21, otherKeys: false },
      { kind: 'delay', waitMs: 1_000 },
    ],
    [
      'a 500 backs off by its attempt',
      failure('transient'),
      { attempt: 2, waits: 0, otherKeys: false },
      { kind: 'delay', waitMs: 2_000 },
    ],
    [
      "a 503's Retry-After longer than the backoff is kept",
      failure('transient', 30_000),
      { attempt: 1, waits: 0, otherKeys: false },
      { kind: 'delay', waitMs: 30_000 },
    ],
    [
      'the last attempt of a 500 fails the prompt',
      failure('transient'),
      { attempt: 3, waits: 0, otherKeys: false },
      { kind: 'fail', code: 'ATTEMPTS_EXHAUSTED' },
    ],
    [
      '429s waited in place do not count as attempts',
      failure('transient'),
      { attempt: 7, waits: 5, otherKeys: false },
      { kind: 'delay', waitMs: 64_000 },
    ],
    [
      'no credit on this key, another key free: park it and go on',
      failure('quota_exhausted'),
      { attempt: 1, waits: 0, otherKeys: true },
      { kind: 'next-key', parkMs: maxParkMs },
    ],
    [
      "no credit on the last key: the prompt's error",
      failure('quota_exhausted'),
      { attempt: 1, waits: 0, otherKeys: false },
      { kind: 'fail', code: 'PROVIDER_QUOTA_EXHAUSTED' },
    ],
    [
      'a refused request is never tried again',
      failure('permanent'),
      { attempt: 1, waits: 0, otherKeys: true },
      { kind: 'fail', code: 'PROVIDER_REJECTED' },
    ],
    [
      'nor a request too large',
      failure('request_too_large'),
      { attempt: 1, waits: 0, otherKeys: true },
      { kind: 'fail', code: 'PROVIDER_REQUEST_TOO_LARGE' },
    ],
  ];
  it.each(table)('%s', (_, f, state, expected) => {
    expect(decide(f, state, rules)).toEqual(expected);
  });
});
