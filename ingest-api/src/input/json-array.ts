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
  let state: 'before' | 'between' | 'element' | 'after' = 'before';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let parts: Buffer[] = [];
  let size = 0;
  let overflow = false;
  let index = 0;
  let first = true;

  const finish = (): Line => {
    index++;
    const line: Line = { lineNumber: index, bytes: overflow ? undefined : Buffer.concat(parts) };
    parts = [];
    size = 0;
    overflow = false;
    return line;
  };

  for await (const raw of stream) {
    let chunk = raw as Buffer;
    if (first) {
      first = false;
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    }
    let start = 0; // start of the element bytes in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (state === 'before') {
        if (isSpace(b)) continue;
        if (b !== C.OpenBracket) throw new JsonArrayError('the body is not a JSON array: it must start with [');
        state = 'between';
        continue;
      }
      if (state === 'after') {
        if (!isSpace(b)) throw new JsonArrayError('unexpected data after the end of the JSON array');
        continue;
      }
      if (state === 'between') {
        if (isSpace(b) || b === C.Comma) continue;
        if (b === C.CloseBracket) {
          state = 'after';
          continue;
        }
        state = 'element';
        start = i;
        depth = 0;
        inString = false;
      }
      // state === 'element'
      if (inString) {
        if (escaped) escaped = false;
        else if (b === C.Backslash) escaped = true;
        else if (b === C.Quote) inString = false;
        continue;
      }
      if (b === C.Quote) inString = true;
      else if (b === C.OpenBrace || b === C.OpenBracket) depth++;
      // A closer with nothing open (a stray `}` after an element) stays in the element's bytes,
      // which then fail to parse: that element's error, not the end of the whole upload.
      else if ((b === C.CloseBrace || b === C.CloseBracket) && depth > 0) depth--;
      else if ((b === C.Comma || b === C.CloseBracket) && depth === 0) {
        append(chunk.subarray(start, i));
        yield finish();
        state = b === C.CloseBracket ? 'after' : 'between';
      }
    }
    if (state === 'element') append(chunk.subarray(start));
  }
  const ended = state as 'before' | 'between' | 'element' | 'after';
  if (ended === 'before') return; // empty body: no elements
  if (ended !== 'after')
    throw new JsonArrayError('the JSON array ends early: the upload was cut off or a ] is missing');

  function append(bytes: Buffer): void {
    if (overflow) return;
    size += bytes.length;
    if (size > maxElementBytes) {
      overflow = true;
      parts = [];
      return;
    }
    parts.push(bytes);
  }
}
