import { describe, expect, it } from 'vitest';
import { limitFromMessage, parseGoDuration, readRateHeaders, retryAfterMs } from '../src/index.js';

const headers = (h: Record<string, string>) => new Headers(h);

describe('rate headers', () => {
  it('reads Go durations', () => {
    expect(parseGoDuration('6m0s')).toBe(360_000);
    expect(parseGoDuration('1.5s')).toBe(1_500);
    expect(parseGoDuration('12ms')).toBe(12);
    expect(parseGoDuration('1h2m3s')).toBe(3_723_000);
    expect(parseGoDuration('soon')).toBeUndefined();
  });

  it("reads the IETF draft's RateLimit-Policy (q per w, unit qu) and RateLimit (r, t) as per-minute limits", () => {
    expect(
      readRateHeaders(
        headers({
          'ratelimit-policy': '"requests";q=20;w=10, "tokens";q=10000;qu="tokens";w=10',
          ratelimit: '"requests";r=19;t=8, "tokens";r=9800;t=8',
        }),
      ),
    ).toEqual({
      limitRequests: 120,
      windowRequestsMs: 10_000,
      remainingRequests: 19,
      resetRequestsMs: 7_500,
      limitTokens: 60_000,
      windowTokensMs: 10_000,
      remainingTokens: 9_800,
      resetTokensMs: 7_500,
    });
    // Cloudflare's form: one policy, default unit; a malformed item is ignored.
    expect(
      readRateHeaders(headers({ 'ratelimit-policy': '"burst";q=100;w=60, ;;', ratelimit: '"burst";r=50;t=30' })),
    ).toEqual({ limitRequests: 100, windowRequestsMs: 60_000, remainingRequests: 50, resetRequestsMs: 29_500 });
  });

  it("reads OpenAI's six headers and ignores Azure's -1", () => {
    expect(
      readRateHeaders(
        headers({
          'x-ratelimit-limit-requests': '500',
          'x-ratelimit-remaining-requests': '499',
          'x-ratelimit-reset-requests': '120ms',
          'x-ratelimit-limit-tokens': '200000',
          'x-ratelimit-remaining-tokens': '-1',
          'x-ratelimit-reset-tokens': '6m0s',
        }),
      ),
    ).toEqual({
      limitRequests: 500,
      remainingRequests: 499,
      resetRequestsMs: 120,
      limitTokens: 200_000,
      resetTokensMs: 360_000,
    });
  });

  it('takes the wait from retry-after-ms, retry-after, or the message', () => {
    expect(retryAfterMs(headers({ 'retry-after-ms': '1234', 'retry-after': '2' }))).toBe(1_234);
    expect(retryAfterMs(headers({ 'retry-after': '2' }))).toBe(2_000);
    expect(retryAfterMs(headers({}), 'Rate limit reached ... Please try again in 1.5s. Visit')).toBe(1_500);
    expect(retryAfterMs(headers({}), 'Please try again in 120ms.')).toBe(120);
    expect(retryAfterMs(headers({}), 'no hint')).toBeUndefined();
    // A whole-second header rounds up the message's wait: the message's finer figure is kept.
    expect(retryAfterMs(headers({ 'retry-after': '1' }), 'Please try again in 20ms. Visit')).toBe(20);
    expect(retryAfterMs(headers({ 'retry-after': '9' }), 'Please try again in 8.764s. Visit')).toBe(8_764);
    // One that says something else (a gateway's window length) is the header's.
    expect(retryAfterMs(headers({ 'retry-after': '60' }), 'Please try again in 20ms. Visit')).toBe(60_000);
  });

  it('reads the limit an OpenAI 429 states in its message', () => {
    expect(
      limitFromMessage(
        'Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): Limit 200000, Used 199000, Requested 1500. Please try again in 450ms.',
      ),
    ).toEqual({ limitTokens: 200_000 });
    expect(limitFromMessage('... on requests per min (RPM): Limit 500, Used 500, Requested 1.')).toEqual({
      limitRequests: 500,
    });
    expect(
      limitFromMessage('Requests to the ChatCompletions_Create Operation ... Please retry after 3 seconds.'),
    ).toEqual({});
  });
});
