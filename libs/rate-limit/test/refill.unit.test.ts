import { describe, expect, it } from 'vitest';
import { LimitLearner } from '../src/learner.js';
import { RefillEstimator } from '../src/refill.js';

/**
 * A provider's token bucket as Azure keeps it: capacity of 10 s of the limit, refilled
 * continuously, another client taking `external` per second; answers say only what remains.
 */
function bucket(limitPerMinute: number, external = 0) {
  const perMs = limitPerMinute / 60_000;
  const capacity = perMs * 10_000;
  let level = capacity;
  let at = 0;
  return {
    /** Another client's use per second, from now on. */
    set external(perSecond: number) {
      external = perSecond;
    },
    /** Charges `cost` at `t` and says what remains, or undefined for a 429. */
    take(t: number, cost: number): number | undefined {
      level = Math.min(capacity, level + (t - at) * (perMs - external / 1_000));
      at = t;
      if (level < cost) return undefined;
      level -= cost;
      return Math.floor(level);
    },
  };
}

/** Sends `cost` tokens every `everyMs` for `ms`, feeding each answer to the estimator. */
function drive(e: RefillEstimator, b: ReturnType<typeof bucket>, cost: number, everyMs: number, ms: number, from = 0) {
  let charged = 0;
  let refused = 0;
  for (let t = from; t < from + ms; t += everyMs) {
    // Costs vary call to call, as prompts do.
    const c = Math.round(cost * (0.6 + (0.8 * ((t * 7919) % 1000)) / 1000));
    charged += c;
    const left = b.take(t, c);
    if (left === undefined) {
      refused++;
      charged -= c;
      e.restart();
    } else e.observe(t, left, charged, c);
  }
  return refused;
}

describe('RefillEstimator', () => {
  it('reads the refill rate from what remains while the bucket drains', () => {
    const e = new RefillEstimator();
    // 600,000 per minute is 10 a millisecond; calls of ~200 every 16 ms take 12.5: it drains.
    drive(e, bucket(600_000), 200, 16, 6_000);
    expect(e.perMinute).toBeDefined();
    expect(Math.abs(e.perMinute! / 600_000 - 1)).toBeLessThan(0.02);
  });

  it('measures what is left for this process when another client takes part of the limit', () => {
    const e = new RefillEstimator();
    drive(e, bucket(600_000, 2_000), 200, 16, 6_000); // the other takes 2,000 a second: 120,000 a minute
    expect(Math.abs(e.perMinute! / 480_000 - 1)).toBeLessThan(0.02);
  });

  it('says nothing while the bucket stays full (the refill spills)', () => {
    const e = new RefillEstimator();
    drive(e, bucket(600_000), 200, 25, 10_000); // 8 a millisecond of 10
    expect(e.perMinute).toBeUndefined();
  });
});

describe('LimitLearner with remaining-only headers', () => {
  /** Calls of 200 tokens at the learner's pace for `ms`; returns 429s and tokens admitted per minute. */
  function paced(l: LimitLearner, b: ReturnType<typeof bucket>, clock: { t: number }, ms: number) {
    let refused = 0;
    let tokens = 0;
    const end = clock.t + ms;
    while (clock.t < end) {
      clock.t += (200 * 60_000) / l.limits().tokensPerMinute!;
      const s = l.sent(200);
      const left = b.take(clock.t, 200);
      if (left === undefined) {
        refused++;
        l.rateLimited();
        continue;
      }
      tokens += 200;
      l.admitted(200);
      l.remaining(s, { tokens: left });
    }
    return { refused, perMinute: (tokens * 60_000) / ms };
  }

  /** Calls faster than the limit for 6.4 s: the bucket drains and the learner measures the refill. */
  function drain(l: LimitLearner, b: ReturnType<typeof bucket>, clock: { t: number }) {
    for (let i = 0; i < 400; i++) {
      clock.t += 16;
      const s = l.sent(200);
      l.admitted(200);
      l.remaining(s, { tokens: b.take(clock.t, 200)! });
    }
  }

  it('measures the refill, then paces so that the whole of it is used with room left in the bucket', () => {
    const clock = { t: 1_000_000 };
    const l = new LimitLearner({ configured: {}, now: () => clock.t });
    const b = bucket(600_000);
    drain(l, b, clock);
    expect(l.mode).toBe('measured');
    // The bucket still holds room: above the refill, to use what it holds (what is left above a
    // margin is spent over a quarter second, as any window's budget is: what is left is no rate),
    // and no faster than that.
    const first = l.limits().tokensPerMinute! / 600_000;
    expect(first).toBeGreaterThan(1);
    const left = b.take(clock.t, 0)!;
    expect(l.limits().tokensPerMinute!).toBeLessThanOrEqual(600_000 * 1.05 + left * 4 * 60);
    expect(l.limits().burstWindowMs).toBe(250);
    paced(l, b, clock, 60_000);
    // Settled: the refill used within 2 %, not one 429.
    const settled = paced(l, b, clock, 20_000);
    expect(settled.refused).toBe(0);
    expect(Math.abs(settled.perMinute / 600_000 - 1)).toBeLessThan(0.02);
  });

  it('under stated limits, paces at a doubled limit at once: the refill measured under the old one is dropped', () => {
    const clock = { t: 1_000_000 };
    const l = new LimitLearner({ configured: {}, now: () => clock.t });
    let b = bucket(600_000);
    l.learn({ tokensPerMinute: 600_000 }, true);
    drain(l, b, clock);
    paced(l, b, clock, 30_000);
    b = bucket(1_200_000); // doubled (and full), as the next answer's headers say
    l.learn({ tokensPerMinute: 1_200_000 }, true);
    expect(l.limits().tokensPerMinute! / 1_200_000).toBeGreaterThan(0.97);
    const after = paced(l, b, clock, 10_000);
    expect(after.refused).toBe(0);
    expect(after.perMinute / 1_200_000).toBeGreaterThan(0.97);
  });

  it('finds a raised limit: while the bucket stays full the pace grows until it drains again', () => {
    const clock = { t: 1_000_000 };
    const l = new LimitLearner({ configured: {}, now: () => clock.t });
    let b = bucket(600_000);
    drain(l, b, clock);
    paced(l, b, clock, 30_000);
    b = bucket(1_200_000); // doubled (and full)
    paced(l, b, clock, 80_000);
    const after = paced(l, b, clock, 10_000);
    expect(after.refused).toBe(0);
    expect(after.perMinute / 1_200_000).toBeGreaterThan(0.95);
  });

  it('under stated limits, paces at what remains for it while another client takes part, and at the limit once it stops', () => {
    const clock = { t: 1_000_000 };
    const l = new LimitLearner({ configured: {}, now: () => clock.t });
    l.learn({ tokensPerMinute: 600_000 }, true); // OpenAI states the limit, and what remains beside it
    const b = bucket(600_000, 2_000); // the other client takes 120,000 a minute
    const first = paced(l, b, clock, 60_000);
    expect(first.refused).toBeLessThanOrEqual(3); // the share's episodes, before the measure caps it
    const settled = paced(l, b, clock, 20_000);
    expect(settled.refused).toBe(0);
    expect(Math.abs(settled.perMinute / 480_000 - 1)).toBeLessThan(0.03);
    b.external = 0;
    paced(l, b, clock, 60_000);
    const alone = paced(l, b, clock, 20_000);
    expect(alone.refused).toBe(0);
    expect(alone.perMinute / 600_000).toBeGreaterThan(0.98);
  });
});
