/** A set of row indices as a bitset that grows as rows arrive: 1 bit a row (125 KB per million). */
export class RowSet {
  private bits = new Uint32Array(1_024);
  size = 0;

  has(row: number): boolean {
    const word = row >>> 5;
    return word < this.bits.length && (this.bits[word]! & (1 << (row & 31))) !== 0;
  }

  /** Adds a row; false when it was there already. */
  add(row: number): boolean {
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

  /** Rows in [0, total) that are not in the set, at most `limit` of them. */
  missing(total: number, limit = Infinity): number[] {
    const out: number[] = [];
    for (let row = 0; row < total && out.length < limit; row++) if (!this.has(row)) out.push(row);
    return out;
  }
}
