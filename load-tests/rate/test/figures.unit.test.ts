import { inflateSync } from 'node:zlib';
import type { LedgerRow } from '@sluice/provider-sim';
import { describe, expect, it } from 'vitest';
import { figures } from '../src/figures.js';
import { crc32, Raster } from '../src/png.js';

function row(t: number, outcome: LedgerRow['outcome'], cost = 100, reason = 'ok'): LedgerRow {
  return {
    seq: 0,
    t,
    key: 'k',
    model: 'm',
    dialect: 'openai',
    outcome,
    reason,
    status: outcome === 'admitted' ? 200 : 429,
    cost,
    promptTokens: cost / 2,
    completionTokens: 10,
    limitRpm: null,
    limitTpm: null,
    latencyMs: 50,
  };
}

describe('rate benchmark figures', () => {
  it('measures utilization after the settle time, 429s per 10,000 and convergence after a change', () => {
    // 10 s at 6,000 tokens/min (100 tokens/s): one 100-token request a second, then at 5 s the
    // limit halves and the client keeps sending one a second (double the new limit) for 2 s, then
    // one every other second.
    const rows: LedgerRow[] = [];
    for (let s = 0; s < 5; s++) rows.push(row(1_000 + s * 1_000 + 10, 'admitted'));
    rows.push(row(6_010, 'admitted'), row(6_500, 'rejected', 100, 'tpm'));
    rows.push(row(7_010, 'admitted'), row(7_500, 'rejected', 100, 'tpm'));
    for (let s = 7; s < 11; s += 2) rows.push(row(1_000 + s * 1_000 + 10, 'admitted'));
    const f = figures(rows, {
      dim: 'tpm',
      t0: 1_000,
      phases: [
        { fromMs: 0, toMs: 5_000, limit: 6_000 },
        { fromMs: 5_000, toMs: 11_000, limit: 3_000 },
      ],
      settleMs: 2_000,
    });
    expect(f.requests).toBe(11);
    expect(f.rateLimited).toBe(2);
    expect(f.rateLimitedPer10k).toBeCloseTo((2 / 11) * 10_000, 1);
    expect(f.phases[0]!.utilization).toBe(1); // seconds 2-4: 100 tokens each of 100 allowed
    expect(f.phases[0]!.convergeS).toBe(0);
    // Phase 2 after settling, seconds 7-10: 100 + 0 + 100 + 0 tokens of 50 a second allowed.
    expect(f.phases[1]!.utilization).toBe(1);
    // Seconds 5-6 ran at double the limit; from second 7 every 2 s window is at the limit.
    expect(f.phases[1]!.convergeS).toBe(2);
    expect(f.series.slice(0, 4)).toEqual([100, 100, 100, 100]);
  });

  it('counts requests in the binding dimension when requests bind', () => {
    const rows = Array.from({ length: 40 }, (_, i) => row(i * 250, 'admitted', 999));
    const f = figures(rows, { dim: 'rpm', t0: 0, phases: [{ fromMs: 0, toMs: 10_000, limit: 240 }], settleMs: 0 });
    expect(f.series).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
    expect(f.phases[0]!.utilization).toBe(1);
  });

  it("measures a fixed window's phase over the whole windows in it after it settles", () => {
    // A fixed 10 s window of 400 calls turning at 10 s, 20 s, … of the simulator's clock; the
    // lane's first call at 800 ms of it, so the turns fall at 9.2 s, 19.2 s, … of the run. Each
    // window's 400 go in its first 800 ms.
    const rows: LedgerRow[] = [row(800, 'admitted', 1)];
    for (let w = 1; w <= 5; w++) for (let i = 0; i < 400; i++) rows.push(row(w * 10_000 + i * 2, 'admitted', 1));
    const o = { dim: 'rpm' as const, t0: 800, phases: [{ fromMs: 0, toMs: 55_000, limit: 2_400 }], settleMs: 10_000 };
    // Whole seconds from 10 s to 55 s of the run: 4 bursts in 45 s (the first fell just before).
    expect(figures(rows, o).phases[0]!.utilization).toBe(0.889);
    // Whole windows, from 19.2 s to 49.2 s of the run: three, each spent.
    expect(figures(rows, { ...o, fixedWindowMs: 10_000 }).phases[0]!.utilization).toBe(1);
  });
});

describe('PNG writer', () => {
  it('writes a PNG whose chunks check out and whose pixels are the ones drawn', () => {
    const img = new Raster(4, 3);
    img.line(0, 1, 3, 1, [255, 0, 0]);
    const png = img.png();
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    let at = 8;
    const chunks: Record<string, Buffer> = {};
    while (at < png.length) {
      const len = png.readUInt32BE(at);
      const typed = png.subarray(at + 4, at + 8 + len);
      expect(png.readUInt32BE(at + 8 + len)).toBe(crc32(typed));
      chunks[typed.subarray(0, 4).toString('ascii')] = typed.subarray(4);
      at += 12 + len;
    }
    expect(Object.keys(chunks)).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect(chunks['IHDR']!.readUInt32BE(0)).toBe(4);
    const raw = inflateSync(chunks['IDAT']!);
    const pixel = (x: number, y: number) => [...raw.subarray(y * 13 + 1 + x * 3, y * 13 + 4 + x * 3)];
    expect(pixel(2, 1)).toEqual([255, 0, 0]);
    expect(pixel(2, 0)).toEqual([255, 255, 255]);
  });
});
