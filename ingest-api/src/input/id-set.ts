/**
 * A set of strings kept as 64-bit hashes in one typed array (about 11 bytes an entry), so that
 * checking a million-row upload for duplicate custom_ids costs megabytes, not the strings. Two
 * different strings share a 64-bit hash with negligible probability (~1e-7 at five million).
 */
export class HashedIdSet {
  private table: Uint32Array;
  private count = 0;

  constructor(capacity = 1 << 12) {
    this.table = new Uint32Array(capacity * 2);
  }

  get size(): number {
    return this.count;
  }

  /** Adds `id`; returns false when it was there already. */
  add(id: string): boolean {
    if ((this.count + 1) * 4 > (this.table.length / 2) * 3) this.grow();
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193 ^ id.length;
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h1 >>>= 0;
    // 0,0 marks an empty slot.
    h2 = (h2 | 1) >>> 0;
    return this.insert(h1, h2);
  }

  private insert(h1: number, h2: number): boolean {
    const slots = this.table.length / 2;
    let slot = h1 % slots;
    for (;;) {
      const a = this.table[slot * 2]!;
      const b = this.table[slot * 2 + 1]!;
      if (a === 0 && b === 0) {
        this.table[slot * 2] = h1;
        this.table[slot * 2 + 1] = h2;
        this.count++;
        return true;
      }
      if (a === h1 && b === h2) return false;
      slot = (slot + 1) % slots;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0) this.insert(old[i]!, old[i + 1]!);
    }
  }
}
