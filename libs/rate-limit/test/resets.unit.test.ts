import { describe, expect, it } from 'vitest';
import { ResetWatch } from '../src/resets.js';

/** Answers to calls every `stepMs` against a fixed window of `quota` per `windowMs` (phase 300 ms). */
function drive(w: ResetWatch, o: { windowMs: number; quota: number; stepMs: number; untilMs: number }) {
  let sent = 0;
  let windowStart = -Infinity;
  let used = 0;
  for (let t = 0; t < o.untilMs; t += o.stepMs) {
    const start = Math.floor((t - 300) / o.windowMs) * o.windowMs + 300;
    if (start !== windowStart) {
      windowStart = start;
      used = 0;
    }
    if (used >= o.quota) continue; // nothing sent into a spent window
    used++;
    sent++;
    w.observe(t, o.quota - used, sent);
  }
}

describe('ResetWatch: a fixed window found from what remains', () => {
  it('finds a 10 s window from the jumps of what remains, and foretells its next reset', () => {
    const w = new ResetWatch();
    drive(w, { windowMs: 10_000, quota: 400, stepMs: 20, untilMs: 45_000 });
    expect(w.windowMs).toBe(10_000);
    // Resets at 300 ms past each 10 s; a call sent at the foretold time comes a little after it.
    const next = w.nextReset(45_000)!;
    expect(next).toBeGreaterThanOrEqual(50_300);
    expect(next).toBeLessThan(50_300 + 150);
  });

  // Regression: once a window's budget is spent, calls go a second apart, and each reset is seen up
  // to a second late: the gaps fitted no whole number of seconds, and no window was found here (in
  // the rate model, their mean: 10,202.5 ms, each reset foretold later than the one before).
  it('finds a 10 s window from resets seen a second late, between the calls they fell between', () => {
    const w = new ResetWatch();
    let sent = 0;
    // Windows from 300 ms past each 10 s: a call every 5 ms while 10 are left, then one every
    // 1,070 ms, the first of a window up to that late.
    let window = -1;
    let used = 0;
    for (let t = 0; t < 45_000; t += 400 - used > 10 ? 5 : 1_070) {
      const now = Math.floor((t - 300) / 10_000);
      if (now !== window) [window, used] = [now, 0];
      used++;
      sent++;
      w.observe(t, 400 - used, sent);
    }
    expect(w.windowMs).toBe(10_000);
  });

  // Regression (bench:rate, fixed 10 s window, remaining only, real stack): three resets seen by
  // calls a second apart, then one seen at once by calls at the window's pace. Between the later
  // bounds the last gap was 9.2 s, nearer 9 s of a 1 s window than 10 s: the window was taken for
  // 1 s, the pace for ten times the limit, and the lane spent a window in a second (3 429s, then
  // nothing for 9 s).
  it('keeps a 10 s window whose resets were seen a second late, then on time', () => {
    const w = new ResetWatch();
    let sent = 0;
    // A reset between a call at `lo` (nothing left) and the next at `hi` (the window's 400 back).
    const between = (lo: number, hi: number) => {
      w.observe(lo, 0, ++sent);
      w.observe(hi, 399, ++sent);
    };
    between(18_240, 19_242);
    between(28_127, 29_127);
    between(38_073, 39_074);
    expect(w.windowMs).toBe(10_000);
    between(48_230, 48_305);
    expect(w.windowMs).toBe(10_000);
    between(58_259, 58_284);
    expect(w.windowMs).toBe(10_000);
  });

  it('takes a 12 s gap between resets of a 10 s window for no 12 s window: the resets fall on no one phase of it', () => {
    const w = new ResetWatch();
    let sent = 0;
    for (const [lo, hi] of [
      [8_280, 10_300],
      [18_280, 20_300],
      [28_280, 30_300],
      [38_280, 40_300],
    ] as const) {
      w.observe(lo, 0, ++sent);
      w.observe(hi, 399, ++sent);
    }
    expect(w.windowMs).toBe(10_000);
  });

  it('takes a 429 wait as a reset to the millisecond, and a limit raised mid-window as no reset', () => {
    const w = new ResetWatch();
    for (const at of [10_300, 20_300, 30_300]) w.refused(at);
    expect(w.windowMs).toBe(10_000);
    // A raised limit freed room at 27 s: seen as a jump, on no phase the others share.
    w.refused(27_000);
    expect(w.windowMs).toBe(10_000);
    expect(w.nextReset(35_000)).toBe(40_300 + 100);
  });

  it('finds no window where room comes back at no common phase (a sliding window)', () => {
    const w = new ResetWatch();
    for (const at of [1_000, 2_730, 5_110, 6_480, 9_950]) w.refused(at);
    expect(w.windowMs).toBeUndefined();
  });
});
