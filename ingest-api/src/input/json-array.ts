import type { Readable } from 'node:stream';
import type { Line } from './lines.js';

const enum C {
  Quote = 0x22,
  Backslash = 0x5c,
  OpenBrace = 0x7b,
  CloseBrace = 0x7d,
  OpenBracket = 0x5b,
  CloseBracket = 0x5d,
  Comma = 0x2c,
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

export class JsonArrayError extends Error {}

/**
 * Splits a JSON array, streamed, into its elements' bytes without parsing the whole document:
 * `lineNumber` is the 1-based element index. Scans bytes (the structural characters are ASCII, so
 * UTF-8 is safe to scan). An element over `maxElementBytes` is reported with `bytes: undefined`.
 * Throws JsonArrayError when the document is not an array or ends early.
 */
export async function* splitJsonArray(stream: Readable, maxElementBytes: number): AsyncGenerator<Line> {
  const scanner = new ArrayScanner(maxElementBytes);
  let first = true;
  for await (const raw of stream) {
    let chunk = raw as Buffer;
    if (first) {
      first = false;
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    }
    yield* scanner.scan(chunk);
  }
  scanner.end();
}

type State = 'before' | 'between' | 'element' | 'after';

/** The scan's state between chunks: where in the array, and the element gathered so far. */
class ArrayScanner {
  private state: State = 'before';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private parts: Buffer[] = [];
  private size = 0;
  private overflow = false;
  private index = 0;

  constructor(private readonly maxElementBytes: number) {}

  /** The elements that end in `chunk`; the rest of an element is kept for the next chunk. */
  scan(chunk: Buffer): Line[] {
    const lines: Line[] = [];
    let start = 0; // start of the element bytes in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.state !== 'element') {
        if (!this.outside(b)) continue;
        start = i;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === C.Backslash) this.escaped = true;
        else if (b === C.Quote) this.inString = false;
        continue;
      }
      if (b === C.Quote) this.inString = true;
      else if (b === C.OpenBrace || b === C.OpenBracket) this.depth++;
      // A closer with nothing open (a stray `}` after an element) stays in the element's bytes,
      // which then fail to parse: that element's error, not the end of the whole upload.
      else if ((b === C.CloseBrace || b === C.CloseBracket) && this.depth > 0) this.depth--;
      else if ((b === C.Comma || b === C.CloseBracket) && this.depth === 0) {
        this.append(chunk.subarray(start, i));
        lines.push(this.finish());
        this.state = b === C.CloseBracket ? 'after' : 'between';
      }
    }
    if (this.state === 'element') this.append(chunk.subarray(start));
    return lines;
  }

  /** A byte outside any element; true when it begins one. */
  private outside(b: number): boolean {
    if (this.state === 'before') {
      if (isSpace(b)) return false;
      if (b !== C.OpenBracket) throw new JsonArrayError('the body is not a JSON array: it must start with [');
      this.state = 'between';
      return false;
    }
    if (this.state === 'after') {
      if (!isSpace(b)) throw new JsonArrayError('unexpected data after the end of the JSON array');
      return false;
    }
    if (isSpace(b) || b === C.Comma) return false;
    if (b === C.CloseBracket) {
      this.state = 'after';
      return false;
    }
    this.state = 'element';
    this.depth = 0;
    this.inString = false;
    return true;
  }

  /** The document ended: an empty body has no elements; else it must have closed its array. */
  end(): void {
    if (this.state === 'before' || this.state === 'after') return;
    throw new JsonArrayError('the JSON array ends early: the upload was cut off or a ] is missing');
  }

  private finish(): Line {
    this.index++;
    const line: Line = { lineNumber: this.index, bytes: this.overflow ? undefined : Buffer.concat(this.parts) };
    this.parts = [];
    this.size = 0;
    this.overflow = false;
    return line;
  }

  private append(bytes: Buffer): void {
    if (this.overflow) return;
    this.size += bytes.length;
    if (this.size > this.maxElementBytes) {
      this.overflow = true;
      this.parts = [];
      return;
    }
    this.parts.push(bytes);
  }
}
