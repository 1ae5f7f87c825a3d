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

  /** Adds every row of another set. */
  addAll(other: RowSet): void {
    if (other.bits.length > this.bits.length) {
      const next = new Uint32Array(other.bits.length);
      next.set(this.bits);
      this.bits = next;
    }
    let size = 0;
    for (let w = 0; w < this.bits.length; w++) {
      const word = (this.bits[w]! | (other.bits[w] ?? 0)) >>> 0;
      this.bits[w] = word;
      size += popcount(word);
    }
    this.size = size;
  }

  /** How many rows of the set are in [0, n). */
  countBelow(n: number): number {
    const full = Math.min(this.bits.length, Math.floor(n / 32));
    let count = 0;
    for (let w = 0; w < full; w++) count += popcount(this.bits[w]!);
    if (full < this.bits.length && n % 32 !== 0) count += popcount(this.bits[full]! & ((1 << (n % 32)) - 1));
    return count;
  }

  /** The set as little-endian 32-bit words, trailing empty words left out (how a job index roll-up stores it). */
  toBuffer(): Buffer {
    let n = this.bits.length;
    while (n > 0 && this.bits[n - 1] === 0) n--;
    const out = Buffer.alloc(n * 4);
    for (let w = 0; w < n; w++) out.writeUInt32LE(this.bits[w]!, w * 4);
    return out;
  }

  /** A set read back from toBuffer()'s bytes. */
  static fromBuffer(bytes: Buffer): RowSet {
    if (bytes.length % 4 !== 0) throw new RangeError(`a row set is whole 32-bit words; ${bytes.length} bytes are not`);
    const set = new RowSet();
    const words = bytes.length / 4;
    let n = set.bits.length;
    while (n < words) n *= 2;
    set.bits = new Uint32Array(n);
    for (let w = 0; w < words; w++) {
      const word = bytes.readUInt32LE(w * 4);
      set.bits[w] = word;
      set.size += popcount(word);
    }
    return set;
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
