import { Raster, type Rgb } from './png.js';

const palette: Record<string, Rgb> = {
  sluice: [31, 119, 180],
  cookbook: [255, 127, 14],
  naive: [214, 39, 40],
};

/** A line chart of admitted rate per second against the limit (black), one line per contender. */
export function chart(o: { title: string; limit: number[]; lines: Array<{ name: string; points: number[] }> }): Buffer {
  const W = 900;
  const H = 420;
  const left = 70;
  const right = 20;
  const top = 40;
  const bottom = 40;
  const img = new Raster(W, H);
  const n = Math.max(o.limit.length, ...o.lines.map((l) => l.points.length), 2);
  const max = Math.max(...o.limit, ...o.lines.flatMap((l) => l.points), 1) * 1.1;
  const x = (i: number) => left + (i / (n - 1)) * (W - left - right);
  const y = (v: number) => H - bottom - (v / max) * (H - top - bottom);
  const grey: Rgb = [200, 200, 200];
  for (let k = 0; k <= 4; k++) {
    const v = (max / 4) * k;
    img.line(left, y(v), W - right, y(v), grey);
    img.text(4, y(v) - 3, String(Math.round(v)), [80, 80, 80]);
  }
  for (let sec = 0; sec < n; sec += 10) img.text(x(sec) - 6, H - bottom + 8, `${sec}s`, [80, 80, 80]);
  img.line(left, top, left, H - bottom, [0, 0, 0]);
  img.line(left, H - bottom, W - right, H - bottom, [0, 0, 0]);
  const draw = (points: number[], c: Rgb, thick: number) => {
    for (let i = 1; i < points.length; i++) img.line(x(i - 1), y(points[i - 1]!), x(i), y(points[i]!), c, thick);
  };
  draw(o.limit, [0, 0, 0], 1);
  o.lines.forEach((l) => draw(l.points, palette[l.name] ?? [100, 100, 100], 2));
  img.text(left, 12, o.title, [0, 0, 0]);
  let lx = left;
  for (const [name, c] of [
    ['limit', [0, 0, 0] as Rgb] as const,
    ...o.lines.map((l) => [l.name, palette[l.name] ?? [100, 100, 100]] as const),
  ]) {
    img.rect(lx, 26, 12, 4, c);
    img.text(lx + 16, 24, name, [0, 0, 0]);
    lx += 16 + name.length * 6 + 20;
  }
  return img.png();
}
