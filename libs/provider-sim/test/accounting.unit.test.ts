import { describe, expect, it } from 'vitest';
import { createLimiter } from '../src/accounting.js';
import { ProviderSim } from '../src/sim.js';
import { parseSimConfig } from '../src/config.js';

/** Admits calls of `cost` every `everyMs` over [0, untilMs): how many went through. */
function drive(l: ReturnType<typeof createLimiter>, everyMs: number, untilMs: number, cost = 1): number {
  let ok = 0;
  for (let t = 0; t < untilMs; t += everyMs) if (l.take(t, cost).allowed) ok++;
  return ok;
}

describe('limit accountings (injected clock)', () => {
  it('a fixed window admits its quota at once, then nothing until the window turns, and says when', () => {
    const l = createLimiter('fixed', 600, 10_000, 0); // 100 per 10 s window
    for (let i = 0; i < 100; i++) expect(l.take(1_000, 1).allowed).toBe(true);
    const refused = l.take(2_500, 1);
    expect(refused.allowed).toBe(false);
    expect(refused.remaining).toBe(0);
    expect(refused.resetMs).toBe(7_500);
    expect(refused.retryAfterMs).toBe(7_500);
    expect(l.take(10_000, 1)).toMatchObject({ allowed: true, remaining: 99, resetMs: 10_000 });
  });

  it('a fixed window paced evenly at its limit admits every call', () => {
    const l = createLimiter('fixed', 1_200, 60_000, 0);
    expect(drive(l, 50, 180_000)).toBe(3_600);
  });

  it('a sliding log counts the last window: room returns as each old call leaves it', () => {
    const l = createLimiter('sliding-log', 60, 10_000, 0); // 10 per 10 s
    for (let i = 0; i < 10; i++) expect(l.take(i * 100, 1).allowed).toBe(true);
    const refused = l.take(5_000, 1);
    expect(refused.allowed).toBe(false);
    // The oldest call (at 0) leaves at 10 s.
    expect(refused.retryAfterMs).toBe(5_000);
    expect(refused.resetMs).toBe(5_000);
    expect(l.take(10_000, 1).allowed).toBe(true);
    expect(l.take(10_050, 1).allowed).toBe(false);
    expect(l.take(10_100, 1).allowed).toBe(true);
  });

  it('a sliding counter weighs the previous window by what the sliding window still covers', () => {
    const l = createLimiter('sliding-counter', 600, 10_000, 0); // 100 per 10 s
    for (let i = 0; i < 100; i++) l.take(9_000, 1);
    // At 12.5 s, 75 % of the previous window's 100 still count.
    const p = l.peek(12_500);
    expect(p.remaining).toBe(25);
    expect(p.resetMs).toBe(7_500);
    for (let i = 0; i < 25; i++) expect(l.take(12_500, 1).allowed).toBe(true);
    const refused = l.take(12_500, 1);
    expect(refused.allowed).toBe(false);
    // One unit of the previous window's weight goes every 100 ms.
    expect(refused.retryAfterMs).toBe(100);
  });

  it('another client on the key takes its share of every accounting, and never beyond the quota', () => {
    for (const a of ['bucket', 'fixed', 'sliding-log', 'sliding-counter'] as const) {
      const alone = createLimiter(a, 600, 10_000, 0);
      const shared = createLimiter(a, 600, 10_000, 0);
      alone.take(0, 1);
      shared.take(0, 1);
      shared.consumeFlow(0, 5_000, 900); // 75 units, more than a bucket refills meanwhile
      expect(shared.peek(5_000).remaining, a).toBeLessThan(alone.peek(5_000).remaining - 20);
      shared.consumeFlow(5_000, 200_000, 60_000);
      expect(shared.peek(200_000).remaining, a).toBeGreaterThanOrEqual(0);
      expect(shared.peek(200_000).used, a).toBeLessThanOrEqual(100 + 1e-6);
    }
  });
});

describe('rate header styles', () => {
  // The simulator starts at 0 and is asked at 2 s: 8 s are left of the first 10 s window.
  const sim = (rateHeaders: string, accounting = 'fixed') => {
    let clock = 0;
    const s = new ProviderSim({
      config: parseSimConfig({
        keys: {
          k: { dialect: 'openai', rateHeaders, limits: { rpm: 120, tpm: 60_000, burstWindowMs: 10_000, accounting } },
        },
      }),
      now: () => clock,
    });
    clock = 2_000;
    return s;
  };
  const call = (s: ProviderSim) => {
    const a = s.handle({
      route: 'chat',
      apiKey: 'k',
      parsed: { model: 'm', promptText: 'x'.repeat(400), maxTokens: 100 },
    });
    if (a.type !== 'reply') throw new Error('no reply');
    return a.reply.headers;
  };

  it('openai: the limit per minute, what remains of the window, and its reset', () => {
    const h = call(sim('openai'));
    expect(h['x-ratelimit-limit-requests']).toBe('120');
    expect(h['x-ratelimit-remaining-requests']).toBe('19');
    expect(h['x-ratelimit-reset-requests']).toBe('8s');
  });

  it('ietf: a policy of q per w seconds, and r remaining for t seconds', () => {
    const h = call(sim('ietf'));
    expect(h['ratelimit-policy']).toBe('"requests";q=20;w=10, "tokens";q=10000;qu="tokens";w=10');
    expect(h['ratelimit']).toBe('"requests";r=19;t=8, "tokens";r=9800;t=8');
    expect(h['x-ratelimit-limit-requests']).toBeUndefined();
  });

  it('remaining: only what remains; none: no rate header at all', () => {
    const r = call(sim('remaining'));
    expect(r['x-ratelimit-remaining-requests']).toBe('19');
    expect(r['x-ratelimit-limit-requests']).toBeUndefined();
    const n = call(sim('none'));
    expect(Object.keys(n).filter((k) => k.includes('ratelimit'))).toEqual([]);
  });

  it('refuses an unknown accounting or header style, naming the field', () => {
    expect(() => parseSimConfig({ keys: { k: { limits: { accounting: 'leaky' } } } })).toThrow(
      /keys\.k\.limits\.accounting: must be one of bucket, fixed, sliding-log, sliding-counter/,
    );
    expect(() => parseSimConfig({ keys: { k: { rateHeaders: 'x' } } })).toThrow(/keys\.k\.rateHeaders/);
  });
});
