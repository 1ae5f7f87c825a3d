import type { Readable } from 'node:stream';

export interface Line {
  /** 1-based line number in the upload. */
  lineNumber: number;
  /** The line's bytes, without its line end; undefined when it was longer than allowed. */
  bytes: Buffer | undefined;
}

const NL = 0x0a;
const CR = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Splits a byte stream into lines without holding more than one line (bounded by `maxLineBytes`)
 * in memory. Strips a UTF-8 BOM at the start and CR before LF. A line over the limit is reported
 * with `bytes: undefined` and skipped up to its end.
 */
export async function* splitLines(stream: Readable, maxLineBytes: number): AsyncGenerator<Line> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overflow = false;
  let lineNumber = 0;
  let first = true;

  const take = (tail: Buffer): Line => {
    lineNumber++;
    if (overflow || pendingBytes + tail.length > maxLineBytes) {
      pending = [];
      pendingBytes = 0;
      overflow = false;
      return { lineNumber, bytes: undefined };
    }
    let bytes = pending.length === 0 ? tail : Buffer.concat([...pending, tail]);
    pending = [];
    pendingBytes = 0;
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    return { lineNumber, bytes };
  };

  for await (const raw of stream) {
    let chunk = raw as Buffer;
    if (first) {
      first = false;
      if (chunk.subarray(0, 3).equals(BOM)) chunk = chunk.subarray(3);
    }
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NL, start);
      if (nl < 0) break;
      yield take(chunk.subarray(start, nl));
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length === 0) continue;
    if (overflow || pendingBytes + rest.length > maxLineBytes) {
      overflow = true;
      pending = [];
      pendingBytes = 0;
    } else {
      pending.push(rest);
      pendingBytes += rest.length;
    }
  }
  if (pendingBytes > 0 || overflow) yield take(Buffer.alloc(0));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes strict UTF-8, or returns undefined for invalid bytes. */
export function decodeUtf8(bytes: Buffer): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}
