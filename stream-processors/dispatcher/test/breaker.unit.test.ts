import { describe, expect, it } from 'vitest';
import { OutageBreaker } from '../src/breaker.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('OutageBreaker', () => {
  it('stays closed under scattered failures (7 % 5xx and timeouts)', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now });
    for (let i = 0; i < 1_000; i++) {
      b.record(i % 14 === 0 ? 'transient' : 'ok');
      c.advance(10);
    }
    expect(b.state).toBe('closed');
    expect(b.opened).toBe(0);
  });

  it('opens when most calls in the window fail, and lets nothing through while open', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now, minCalls: 10, openMs: 5_000 });
    for (let i = 0; i < 9; i++) b.record('transient');
    expect(b.state).toBe('closed'); // too few calls to judge
    b.record('transient');
    expect(b.state).toBe('open');
    const refused = b.admit();
    expect(refused).toEqual({ go: false, waitMs: 5_000 });
    c.advance(4_999);
    expect(b.admit().go).toBe(false);
  });

  it('sends one probe when the open time is over; its success closes the breaker', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now, minCalls: 4, openMs: 1_000 });
    for (let i = 0; i < 4; i++) b.record('transient');
    c.advance(1_000);
    expect(b.state).toBe('half_open');
    const probe = b.admit();
    expect(probe).toEqual({ go: true, probe: true });
    expect(b.admit().go).toBe(false); // one probe at a time
    b.record('ok', true);
    expect(b.state).toBe('closed');
    expect(b.admit()).toEqual({ go: true, probe: false });
  });

  it('doubles the open time after each failed probe, up to the maximum', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now, minCalls: 2, openMs: 1_000, maxOpenMs: 3_000 });
    b.record('transient');
    b.record('transient');
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = b.admit();
      if (r.go) throw new Error('open breaker let a call through');
      waits.push(r.waitMs);
      c.advance(r.waitMs);
      const probe = b.admit();
      expect(probe.go).toBe(true);
      b.record('transient', true);
    }
    expect(waits).toEqual([1_000, 2_000, 3_000]);
    expect(b.opened).toBe(4);
  });

  it('forgets failures older than the window', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now, minCalls: 10, windowMs: 10_000 });
    for (let i = 0; i < 9; i++) b.record('transient');
    c.advance(11_000);
    b.record('transient');
    expect(b.state).toBe('closed');
  });
});

describe('OutageBreaker after a long healthy run', () => {
  it('opens on a run of failures even when the window is full of successes', () => {
    const c = clock();
    const b = new OutageBreaker({ clock: c.now, consecutiveFailures: 20 });
    for (let i = 0; i < 500; i++) b.record('ok');
    for (let i = 0; i < 19; i++) b.record('transient');
    expect(b.state).toBe('closed');
    b.record('transient');
    expect(b.state).toBe('open');
  });
});
