const bucketBits = 12;
const buckets = 1 << bucketBits;

/**
 * A set of strings kept as 64-bit hashes, about 9 bytes an entry, so that checking a five-million-
 * row upload for duplicate custom_ids costs tens of megabytes, not the strings. A hash's top 12 bits
 * choose one of 4,096 buckets; the other 52 bits are stored exactly as a number in the bucket's
 * sorted Float64Array. Buckets grow by a quarter at a time, so there is little slack and no moment
 * when the whole set exists twice. Two different strings share a 64-bit hash with negligible
 * probability (~1e-6 at five million).
 */
export class HashedIdSet {
  private readonly tables: Array<Float64Array | undefined> = new Array(buckets);
  private readonly lengths = new Uint32Array(buckets);
  private total = 0;

  get size(): number {
    return this.total;
  }

  /** Adds `id`; returns false when it was there already. */
  add(id: string): boolean {
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193 ^ id.length;
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h1 >>>= 0;
    h2 >>>= 0;
    const b = h1 >>> (32 - bucketBits);
    const key = (h1 & ((1 << (32 - bucketBits)) - 1)) * 4_294_967_296 + h2; // the other 52 bits, exact
    const n = this.lengths[b]!;
    let table = this.tables[b];
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (table![mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    if (lo < n && table![lo] === key) return false;
    if (table === undefined || n === table.length) {
      const grown = new Float64Array(table === undefined ? 8 : Math.ceil(table.length * 1.25) + 8);
      if (table !== undefined) grown.set(table);
      this.tables[b] = table = grown;
    }
    table.copyWithin(lo + 1, lo, n);
    table[lo] = key;
    this.lengths[b] = n + 1;
    this.total++;
    return true;
  }
}
