import { describe, expect, it } from 'vitest';
import { FairShare } from '../src/fair-share.js';

describe('FairShare', () => {
  it('lets a lone partition use every slot', () => {
    const f = new FairShare(8);
    for (let i = 0; i < 8; i++) expect(f.admit(0, 1)).toBe(true);
    expect(f.admit(0, 1)).toBe(false);
  });

  it('gives a newcomer its share as the busy partition frees slots', () => {
    const f = new FairShare(8);
    for (let i = 0; i < 8; i++) f.admit(0, 1); // a backfill holds all 8
    expect(f.admit(1, 1)).toBe(false); // a small job waits, and now counts
    expect(f.share(1)).toBe(4);
    f.finished(0);
    expect(f.resumable()).toEqual([1]);
    expect(f.admit(1, 1)).toBe(true);
    // The backfill is over its share of 4 now: it does not get the next free slot.
    f.finished(0);
    expect(f.admit(0, 1)).toBe(false);
    expect(f.admit(1, 1)).toBe(true);
  });

  it('counts a weight that is not a positive number as 1: no share is ever NaN', () => {
    const f = new FairShare(12);
    expect(f.admit(0, Number.NaN)).toBe(true);
    expect(f.admit(1, undefined as unknown as number)).toBe(true);
    expect(f.admit(2, -3)).toBe(true);
    for (const p of [0, 1, 2]) expect(f.share(p)).toBe(4);
    // and the lane goes on: the other slots are still given out
    for (let i = 0; i < 3; i++) expect(f.admit(0, 1)).toBe(true);
  });

  it('shares by weight (1 + priority)', () => {
    const f = new FairShare(12);
    f.admit(0, 1);
    f.admit(1, 3);
    expect(f.share(0)).toBe(3);
    expect(f.share(1)).toBe(9);
  });

  it('resized, admits up to the new capacity, and lets waiting partitions go when it grows', () => {
    const f = new FairShare(4);
    for (let i = 0; i < 4; i++) expect(f.admit(0, 1)).toBe(true);
    expect(f.admit(0, 1)).toBe(false); // waits
    f.resize(8);
    expect(f.slots).toBe(8);
    expect(f.resumable()).toEqual([0]);
    for (let i = 0; i < 4; i++) expect(f.admit(0, 1)).toBe(true);
    f.resize(2); // calls in flight finish as they are; none starts until under 2
    for (let i = 0; i < 6; i++) f.finished(0);
    expect(f.admit(0, 1)).toBe(false);
    f.finished(0);
    expect(f.admit(0, 1)).toBe(true);
  });
});
