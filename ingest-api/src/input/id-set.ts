const segmentsCount = 256;

/**
 * A set of strings kept as 64-bit hashes in typed arrays (8 bytes an entry, at most 4/3 of that
 * with the table's slack), so that checking a million-row upload for duplicate custom_ids costs
 * megabytes, not the strings. Two different strings share a 64-bit hash with negligible probability
 * (~1e-6 at five million). The table is split in 256 segments that grow on their own, so a growth
 * never holds two copies of the whole table.
 */
export class HashedIdSet {
  private readonly segments: Uint32Array[] = [];
  private readonly counts = new Uint32Array(segmentsCount);
  private total = 0;

  constructor(slotsPerSegment = 16) {
    for (let i = 0; i < segmentsCount; i++) this.segments.push(new Uint32Array(slotsPerSegment * 2));
  }

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
    h2 = (h2 | 1) >>> 0; // never 0: (0, 0) marks an empty slot
    const s = h2 >>> 24;
    if ((this.counts[s]! + 1) * 4 > (this.segments[s]!.length / 2) * 3) this.grow(s);
    const added = insert(this.segments[s]!, h1, h2);
    if (added) {
      this.counts[s]!++;
      this.total++;
    }
    return added;
  }

  private grow(s: number): void {
    const old = this.segments[s]!;
    const table = new Uint32Array(old.length * 2);
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0) insert(table, old[i]!, old[i + 1]!);
    }
    this.segments[s] = table;
  }
}

function insert(table: Uint32Array, h1: number, h2: number): boolean {
  const slots = table.length / 2;
  let slot = h1 % slots;
  for (;;) {
    const a = table[slot * 2]!;
    const b = table[slot * 2 + 1]!;
    if (a === 0 && b === 0) {
      table[slot * 2] = h1;
      table[slot * 2 + 1] = h2;
      return true;
    }
    if (a === h1 && b === h2) return false;
    slot = (slot + 1) % slots;
  }
}
