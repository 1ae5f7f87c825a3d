import { describe, expect, it } from 'vitest';
import { InFlightCap } from '../src/in-flight.js';

describe("InFlightCap (Little's law)", () => {
  it('allows rate × p99 latency × 1.5 calls in flight, within its bounds', () => {
    const cap = new InFlightCap({ max: 1_000 });
    for (let i = 0; i < 500; i++) cap.record(100 + (i % 100)); // 100-199 ms
    expect(cap.p99Ms()).toBe(199);
    expect(cap.cap(50)).toBe(15); // 50/s × 0.199 s × 1.5 = 14.9
    expect(cap.cap(0.1)).toBe(4); // never below the floor
    expect(cap.cap(1_000_000)).toBe(1_000); // never above the bound (memory)
    expect(cap.cap(undefined)).toBe(1_000); // no limit known: the bound
  });

  it('follows latency as it changes: a slow provider gets more calls in flight at the same rate', () => {
    const cap = new InFlightCap({ max: 10_000, window: 100 });
    for (let i = 0; i < 100; i++) cap.record(200);
    const fast = cap.cap(40);
    for (let i = 0; i < 100; i++) cap.record(30_000); // p99 of 30 s, as a reasoning model has
    expect(fast).toBe(12);
    expect(cap.cap(40)).toBe(1_800);
  });

  it('counts the time a slot is held beyond the call: fast calls at a high rate still get enough slots', () => {
    const cap = new InFlightCap({ max: 1_000, min: 8, overheadMs: 250 });
    for (let i = 0; i < 100; i++) cap.record(5);
    // 100/s × (5 + 250) ms × 1.5 = 38.25: without the overhead, the floor of 8 slots would allow
    // 8 / 0.255 s ≈ 31 calls a second.
    expect(cap.cap(100)).toBe(39);
  });
});
