import { describe, expect, it } from 'vitest';
import { createLimiter, type Accounting } from '@sluice/provider-sim';
import { LimitLearner } from '../src/learner.js';

/**
 * A learner in closed loop with one of the simulator's accountings, on a simulated clock: calls
 * go out at the pace it sets (latency 0), each answer states the limit per minute, what remains
 * and its reset, as OpenAI's headers do (or only what remains, as Azure's); a 429 waits out its
 * retry-after. Returns what the
 * provider admitted per minute over the run's last `measureMs`, and the 429s.
 */
function closedLoop(o: {
  accounting: Accounting;
  rpm: number;
  windowMs: number;
  runMs: number;
  measureMs: number;
  /** Another client's share of the limit, from `otherFromMs` on. */
  other?: number;
  otherFromMs?: number;
  /** The limit changes to this at `changeAtMs`. */
  changeTo?: number;
  changeAtMs?: number;
  /** full: limit, remaining and reset (OpenAI's); remaining: what remains only (Azure's). @default full */
  headers?: 'full' | 'remaining';
}) {
  let t = 0;
  const provider = createLimiter(o.accounting, o.rpm, o.windowMs, 0);
  const l = new LimitLearner({ configured: {}, now: () => t });
  let sent = 0;
  let admitted = 0;
  let rejected = 0;
  let rejectedMeasured = 0;
  let flowAt = 0;
  let pausedUntil = 0;
  let silentMs = 0;
  let lastAdmitAt = 0;
  // Slow start needs an answer to learn from first.
  while (t < o.runMs) {
    if (o.changeAtMs !== undefined && t >= o.changeAtMs && provider.limitPerMinute !== o.changeTo)
      provider.setLimit(t, o.changeTo!, o.windowMs);
    if (o.other && t >= (o.otherFromMs ?? 0))
      provider.consumeFlow(Math.max(flowAt, o.otherFromMs ?? 0), t, o.other * provider.limitPerMinute);
    flowAt = t;
    const rpm = l.limits().requestsPerMinute ?? 60;
    // As the dispatcher does: nothing goes while the learner holds (a spent window's last moments).
    const hold = l.holdMs();
    if (hold > 0 && t >= pausedUntil) {
      t += hold;
      continue;
    }
    if (t >= pausedUntil) {
      sent++;
      const stamp = l.sent(1, { requests: sent, tokens: sent });
      const d = provider.take(t, 1);
      if (d.allowed) {
        if (t >= o.runMs - o.measureMs) admitted++;
        silentMs = Math.max(silentMs, t - lastAdmitAt);
        lastAdmitAt = t;
        l.admitted(1);
        if (o.headers === 'remaining') l.remaining(stamp, { requests: d.remaining });
        else {
          l.remaining(stamp, { requests: d.remaining, resetRequestsMs: d.resetMs });
          l.learn({ requestsPerMinute: provider.limitPerMinute }, true);
        }
      } else {
        rejected++;
        if (t >= o.runMs - o.measureMs) rejectedMeasured++;
        // As the dispatcher does: the 429's retry-after goes to the learner, and is waited out.
        l.rateLimited(1, d.retryAfterMs);
        pausedUntil = t + d.retryAfterMs;
      }
    }
    // The next call when the pace allows it; a pause or a budget's reset may come sooner.
    const step = 60_000 / Math.max(1, rpm);
    t += pausedUntil > t ? pausedUntil - t : Math.min(step, (l.changesInMs() ?? Infinity) + 1);
  }
  return { perMinute: (admitted / o.measureMs) * 60_000, rejected, rejectedMeasured, sent, silentMs, mode: l.mode };
}

describe('budgets: remaining until reset, whatever the accounting', () => {
  // Regression: under a fixed window the refill measured from remaining + sent is about 0, and it
  // capped the stated limits: the learner stopped calling after its first window, without a 429.
  it('a fixed 60 s window: the pace holds the stated limit window after window, no stall', () => {
    const r = closedLoop({ accounting: 'fixed', rpm: 1_200, windowMs: 60_000, runMs: 300_000, measureMs: 240_000 });
    expect(r.perMinute).toBeGreaterThanOrEqual(0.95 * 1_200);
    expect(r.silentMs).toBeLessThan(5_000);
    expect(r.rejected).toBeLessThanOrEqual(10);
  });

  it('a fixed window shared with another client: the budget spreads over what is left, without 429s', () => {
    const r = closedLoop({
      accounting: 'fixed',
      rpm: 1_200,
      windowMs: 10_000,
      runMs: 120_000,
      measureMs: 100_000,
      other: 0.5,
    });
    // The other client takes what it can; Sluice takes the rest of each window.
    expect(r.perMinute).toBeGreaterThanOrEqual(0.95 * 600);
    expect(r.rejected / r.sent).toBeLessThanOrEqual(0.001);
  });

  for (const accounting of ['sliding-log', 'sliding-counter', 'bucket'] as const) {
    it(`a ${accounting} of 10 s: at least 0.95 of the limit`, () => {
      const r = closedLoop({ accounting, rpm: 1_200, windowMs: 10_000, runMs: 120_000, measureMs: 100_000 });
      expect(r.perMinute).toBeGreaterThanOrEqual(0.95 * 1_200);
      expect(r.silentMs).toBeLessThan(5_000);
    });
  }

  it('a limit lowered mid-run (1,200 → 600 per minute) is followed within a window, and kept to', () => {
    const r = closedLoop({
      accounting: 'sliding-log',
      rpm: 1_200,
      windowMs: 10_000,
      runMs: 120_000,
      measureMs: 90_000,
      changeTo: 600,
      changeAtMs: 20_000,
    });
    expect(r.perMinute).toBeGreaterThanOrEqual(0.95 * 600);
    expect(r.perMinute).toBeLessThanOrEqual(1.01 * 600);
  });
});

describe('remaining-only answers (Azure): a fixed window found from what remains', () => {
  for (const windowMs of [1_000, 10_000]) {
    it(`a fixed ${windowMs / 1_000} s window: once three resets are seen, each window's budget is used, with few 429s`, () => {
      const r = closedLoop({
        accounting: 'fixed',
        rpm: 1_200,
        windowMs,
        runMs: 200_000,
        measureMs: 120_000,
        headers: 'remaining',
      });
      expect(r.mode).toBe('measured');
      expect(r.perMinute).toBeGreaterThanOrEqual(0.95 * 1_200);
      expect(r.rejectedMeasured).toBeLessThanOrEqual(3);
    });
  }
});
