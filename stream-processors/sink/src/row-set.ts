/** The largest row index a RowSet holds: its words are indexed by row >>> 5, an unsigned 32-bit shift. */
export const maxRow = 2 ** 32 - 1;

/** A set of row indices as a bitset that grows as rows arrive: 1 bit a row (125 KB per million). */
export class RowSet {
  private bits = new Uint32Array(1_024);
  size = 0;

  has(row: number): boolean {
    const word = row >>> 5;
    return word < this.bits.length && (this.bits[word]! & (1 << (row & 31))) !== 0;
  }

  /** Adds a row; false when it was there already. Rows outside [0, maxRow] are refused. */
  add(row: number): boolean {
    if (!Number.isSafeInteger(row) || row < 0 || row > maxRow)
      throw new RangeError(`row ${row} is outside [0, ${maxRow}]`);
    const word = row >>> 5;
    if (word >= this.bits.length) {
      let n = this.bits.length;
      while (n <= word) n *= 2;
      const next = new Uint32Array(n);
      next.set(this.bits);
      this.bits = next;
    }
    const mask = 1 << (row & 31);
    if ((this.bits[word]! & mask) !== 0) return false;
    this.bits[word] = this.bits[word]! | mask;
    this.size++;
    return true;
  }

  /** How many rows of the set are in [0, n). */
  countBelow(n: number): number {
    const full = Math.min(this.bits.length, Math.floor(n / 32));
    let count = 0;
    for (let w = 0; w < full; w++) count += popcount(this.bits[w]!);
    if (full < this.bits.length && n % 32 !== 0) count += popcount(this.bits[full]! & ((1 << (n % 32)) - 1));
    return count;
  }

  /** Rows in [0, total) that are not in the set, at most `limit` of them. */
  missing(total: number, limit = Infinity): number[] {
    const out: number[] = [];
    for (let row = 0; row < total && out.length < limit; row++) if (!this.has(row)) out.push(row);
    return out;
  }
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
