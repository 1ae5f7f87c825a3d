import { describe, expect, it } from 'vitest';
import { RowSet } from '../src/row-set.js';

describe('RowSet', () => {
  it('comes back from its bytes with the same rows, and no more', () => {
    const set = new RowSet();
    const rows = [0, 1, 31, 32, 33, 1_000, 65_535, 1_000_003];
    for (const r of rows) set.add(r);
    const bytes = set.toBuffer();
    // Trailing empty words are left out: the highest row decides the length.
    expect(bytes.length).toBe((Math.floor(1_000_003 / 32) + 1) * 4);
    const back = RowSet.fromBuffer(bytes);
    expect(back.size).toBe(rows.length);
    for (const r of rows) expect(back.has(r)).toBe(true);
    expect(back.countBelow(2_000_000)).toBe(rows.length);
    expect(back.has(2)).toBe(false);
    expect(back.has(1_000_002)).toBe(false);
    expect(RowSet.fromBuffer(new RowSet().toBuffer()).size).toBe(0);
    expect(() => RowSet.fromBuffer(Buffer.alloc(3))).toThrow(/whole 32-bit words/);
  });

  it('adds every row of another set, counting each once', () => {
    const a = new RowSet();
    const b = new RowSet();
    for (let r = 0; r < 100; r += 2) a.add(r);
    for (let r = 0; r < 5_000; r += 3) b.add(r);
    a.addAll(b);
    let expected = 0;
    for (let r = 0; r < 5_000; r++) if ((r < 100 && r % 2 === 0) || r % 3 === 0) expected++;
    expect(a.size).toBe(expected);
    expect(a.has(4_998)).toBe(true);
    expect(a.has(4_999)).toBe(false);
    expect(a.add(4_998)).toBe(false);
  });
});
