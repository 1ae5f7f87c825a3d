import { describe, expect, it } from 'vitest';
import { OffsetTracker } from '../src/offset-tracker.js';

describe('OffsetTracker', () => {
  it('commits only up to the highest contiguous finished offset', () => {
    const t = new OffsetTracker();
    for (const o of [10, 11, 12, 13]) t.start(o);
    expect(t.finish(12)).toBeUndefined(); // 10 and 11 still run
    expect(t.finish(11)).toBeUndefined();
    expect(t.commitOffset).toBeUndefined();
    expect(t.finish(10)).toBe(13); // 10, 11, 12 done: next to read is 13
    expect(t.inFlight).toBe(1);
    expect(t.finish(13)).toBe(14);
    expect(t.inFlight).toBe(0);
  });

  it('allows gaps in offsets (compacted or transaction markers) and refuses out-of-order starts', () => {
    const t = new OffsetTracker();
    t.start(5);
    t.start(9); // 6-8 were transaction markers or aborted records
    expect(t.finish(9)).toBeUndefined();
    expect(t.finish(5)).toBe(10);
    expect(() => t.start(7)).toThrow(/start in order/);
    expect(() => t.finish(5)).toThrow(/not started or is already committed/);
  });

  it('passes a transaction marker after the last record once the records before it are done', () => {
    const t = new OffsetTracker();
    t.start(20);
    t.start(21);
    expect(t.skip(22)).toBeUndefined(); // 20 and 21 still run
    expect(t.finish(21)).toBeUndefined();
    expect(t.finish(20)).toBe(23); // past the marker: the log's end
    expect(t.skip(22)).toBeUndefined(); // seen again (a refetch): already behind the commit
    expect(t.skip(25)).toBe(26);
  });
});
