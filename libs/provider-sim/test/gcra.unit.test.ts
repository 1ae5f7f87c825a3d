import { describe, expect, it } from 'vitest';
import { DailyCounter, Gcra } from '../src/gcra.js';
import { goDuration } from '../src/dialects.js';
import { completion, providerTokens } from '../src/tokens.js';

describe('Gcra (injected clock)', () => {
  it('admits a full burst, then one unit per emission interval', () => {
    // 600 per minute = one every 100 ms; a 1 s window holds 10.
    const b = new Gcra({ limitPerMinute: 600, burstWindowMs: 1_000 });
    const t0 = 1_000_000;
    const burst = Array.from({ length: 10 }, () => b.take(t0, 1));
    expect(burst.every((d) => d.allowed)).toBe(true);
    expect(burst.map((d) => d.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const refused = b.take(t0, 1);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(100);
    expect(b.take(t0 + 99, 1).allowed).toBe(false);
    expect(b.take(t0 + 100, 1).allowed).toBe(true);
    expect(b.peek(t0 + 100).resetMs).toBe(1_000);
  });

  it('charges a cost in units and tells how long until that cost fits', () => {
    const b = new Gcra({ limitPerMinute: 60_000, burstWindowMs: 60_000 }); // 1,000 tokens/s, holds 60,000
    const t0 = 0;
    expect(b.take(t0, 59_000).allowed).toBe(true);
    const d = b.take(t0, 2_000);
    expect(d.allowed).toBe(false);
    expect(d.used).toBeCloseTo(59_000, 6);
    expect(d.retryAfterMs).toBe(1_000); // 1,000 tokens short at 1 token/ms
    expect(b.take(t0 + 1_000, 2_000).allowed).toBe(true);
  });

  it('admits a cost above the burst capacity only into a full bucket', () => {
    const b = new Gcra({ limitPerMinute: 600, burstWindowMs: 1_000 }); // holds 10
    expect(b.take(0, 1).allowed).toBe(true);
    expect(b.take(0, 30).allowed).toBe(false);
    expect(b.take(100, 30).allowed).toBe(true); // full again at 100 ms
    expect(b.take(2_000, 1).allowed).toBe(false); // in debt until 3,100 ms
    expect(b.take(3_100, 1).allowed).toBe(true);
  });

  it('keeps the units in use across a limit change', () => {
    const b = new Gcra({ limitPerMinute: 600, burstWindowMs: 1_000 });
    for (let i = 0; i < 10; i++) b.take(0, 1);
    b.setLimit(0, 1_200); // holds 20 now; 10 in use
    expect(b.peek(0).remaining).toBe(10);
    expect(b.take(0, 10).allowed).toBe(true);
    expect(b.take(0, 1).allowed).toBe(false);
    expect(b.take(50, 1).allowed).toBe(true); // 1,200/min = one per 50 ms
  });

  it('lets an outside consumer take its share of the rate', () => {
    const b = new Gcra({ limitPerMinute: 600, burstWindowMs: 1_000 });
    // For 10 s another client takes 50 %: our share is 5 per second once the burst is spent.
    let admitted = 0;
    for (let t = 0; t < 10_000; t += 10) {
      b.consumeFlow(t - 10 < 0 ? 0 : t - 10, t, 300);
      if (b.take(t, 1).allowed) admitted++;
    }
    expect(admitted).toBeGreaterThanOrEqual(50);
    expect(admitted).toBeLessThanOrEqual(60); // 50 + at most the first burst
  });
});

describe('DailyCounter', () => {
  it('admits the daily limit and names the wait until the next day', () => {
    const day = 86_400_000;
    const c = new DailyCounter(2, 0);
    expect(c.take(1_000).allowed).toBe(true);
    expect(c.take(2_000).allowed).toBe(true);
    const refused = c.take(3_000);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(day - 3_000);
    expect(c.take(day).allowed).toBe(true);
  });
});

describe('formats', () => {
  it('writes reset durations the way Go does', () => {
    expect(goDuration(12)).toBe('12ms');
    expect(goDuration(1_500)).toBe('1.5s');
    expect(goDuration(360_000)).toBe('6m0s');
    expect(goDuration(3_723_000)).toBe('1h2m3s');
    expect(goDuration(0)).toBe('0s');
  });

  it('counts provider tokens as ceil(chars / 4) and makes completions deterministic', () => {
    expect(providerTokens(0)).toBe(0);
    expect(providerTokens(9)).toBe(3);
    const a = completion(7, 'gpt-4o-mini', 'Summarize the filing.', 100);
    expect(completion(7, 'gpt-4o-mini', 'Summarize the filing.', 100)).toEqual(a);
    expect(completion(8, 'gpt-4o-mini', 'Summarize the filing.', 100)).not.toEqual(a);
    expect(a.tokens).toBeGreaterThanOrEqual(30);
    expect(a.tokens).toBeLessThanOrEqual(100);
    expect(providerTokens(a.text.length)).toBe(a.tokens);
  });
});
