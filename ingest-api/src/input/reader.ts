import { Readable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import { SluiceError } from '@sluice/errors';
import { JsonArrayError, splitJsonArray } from './json-array.js';
import { decodeUtf8, splitLines, type Line } from './lines.js';
import { normalizeRow, type PromptRow, type RowError, type RowRules } from './row.js';

export type InputFormat = 'jsonl' | 'csv' | 'json';

export interface InputLimits extends RowRules {
  /** The largest line (JSONL), element (JSON array) or record (CSV). @default 1 MiB */
  maxLineBytes: number;
}

/**
 * One row of an upload: a prompt or the reason it is not one. `line` is 1-based. `raw` is the
 * row's bytes as sent (a JSONL line or a JSON array's element), where the reader has them.
 */
export type InputItem = (
  | { line: number; row: PromptRow; error?: undefined }
  | {
      line: number;
      error: RowError;
      row?: undefined;
      /** The row's custom_id where it could be read (a string, and Unicode), for its error outcome. */
      customId?: string;
    }
) & { raw?: Buffer };

/** A bad row's custom_id, where its value has one that can be sent back: a string of Unicode text. */
function customIdOf(value: unknown): { customId?: string } {
  const id = typeof value === 'object' && value !== null ? (value as { custom_id?: unknown }).custom_id : undefined;
  return typeof id === 'string' && !loneSurrogate.test(id) ? { customId: id } : {};
}

/** The format named by a Content-Type (or a ?format= override). */
export function formatOf(contentType: string | undefined, override?: string): InputFormat | undefined {
  const t = (override ?? contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (
    ['jsonl', 'application/jsonl', 'application/x-ndjson', 'application/x-jsonlines', 'application/jsonlines'].includes(
      t,
    )
  )
    return 'jsonl';
  if (['csv', 'text/csv', 'application/csv'].includes(t)) return 'csv';
  if (['json', 'application/json'].includes(t)) return 'json';
  return undefined;
}

function fromLine(line: Line, rules: RowRules, maxLineBytes: number, unit: string): InputItem | undefined {
  if (line.bytes === undefined) {
    return {
      line: line.lineNumber,
      error: {
        code: 'INPUT_LINE_TOO_LONG',
        message: `${unit} ${line.lineNumber} is longer than ${maxLineBytes} bytes`,
      },
    };
  }
  const raw = line.bytes;
  const text = decodeUtf8(raw);
  if (text === undefined) {
    return {
      line: line.lineNumber,
      raw,
      error: { code: 'INPUT_INVALID_UTF8', message: `${unit} ${line.lineNumber} is not valid UTF-8` },
    };
  }
  if (text.trim() === '') return undefined; // blank lines are not rows
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return {
      line: line.lineNumber,
      raw,
      error: {
        code: 'INPUT_INVALID_JSON',
        message: `${unit} ${line.lineNumber} is not valid JSON: ${(e as Error).message}`,
      },
    };
  }
  // An escaped lone surrogate (\ud800) is valid JSON but not Unicode: written as UTF-8 it would
  // become U+FFFD, changing the prompt and making distinct custom_ids one.
  if (surrogateEscape.test(text)) {
    const where = unpairedSurrogate(value, '');
    if (where !== undefined)
      return {
        line: line.lineNumber,
        raw,
        ...customIdOf(value),
        error: {
          code: 'INPUT_INVALID_UNICODE',
          message: `${unit} ${line.lineNumber} has an unpaired UTF-16 surrogate in ${where || 'its value'}: it is not Unicode text and cannot be sent as UTF-8; pair it or remove it`,
        },
      };
  }
  const row = normalizeRow(value, rules);
  return 'code' in row
    ? { line: line.lineNumber, raw, error: row, ...customIdOf(value) }
    : { line: line.lineNumber, raw, row };
}

const surrogateEscape = /\\u[dD][89a-fA-F]/;
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The path of the first string (or key) in `v` with an unpaired surrogate, else undefined. */
function unpairedSurrogate(v: unknown, path: string): string | undefined {
  if (typeof v === 'string') return loneSurrogate.test(v) ? path : undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const w = unpairedSurrogate(v[i], `${path}[${i}]`);
      if (w !== undefined) return w;
    }
    return undefined;
  }
  if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const here = path ? `${path}.${k}` : k;
      if (loneSurrogate.test(k)) return here;
      const w = unpairedSurrogate(x, here);
      if (w !== undefined) return w;
    }
  }
  return undefined;
}

/**
 * Refuses, from its first bytes and before any row is read, a body that is not UTF-8 text: UTF-16
 * (with a byte order mark, or without one: ASCII text in UTF-16 is every other byte NUL) and gzip
 * sent without `Content-Encoding: gzip`. Passes everything else on as it is; the body's own errors
 * (a size limit, a client gone) come through.
 */
export async function* utf8Only(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  for await (const chunk of body) {
    if (head === undefined) {
      yield chunk;
      continue;
    }
    head = Buffer.concat([head, chunk]);
    // Decided on the first bytes that arrive (a client may trickle rows and wait for commits).
    if (head.length < 4) continue;
    refuseNotUtf8(head);
    yield head;
    head = undefined;
  }
  if (head !== undefined && head.length > 0) {
    refuseNotUtf8(head);
    yield head;
  }
}

function refuseNotUtf8(bytes: Buffer): void {
  if (bytes.length < 2) return;
  const start = bytes.subarray(0, 512);
  const utf16 =
    (bytes[0] === 0xff && bytes[1] === 0xfe) ||
    (bytes[0] === 0xfe && bytes[1] === 0xff) ||
    start.filter((b) => b === 0).length >= start.length / 4;
  if (utf16)
    throw new SluiceError('INPUT_NOT_UTF8', 'the upload is UTF-16 text; Sluice reads UTF-8', {
      hint: 'convert it first, for example: iconv -f UTF-16 -t UTF-8 input.jsonl > input-utf8.jsonl',
    });
  if (bytes[0] === 0x1f && bytes[1] === 0x8b)
    throw new SluiceError('INPUT_NOT_UTF8', 'the upload is gzip-compressed but was not sent as such', {
      hint: 'send it with the header Content-Encoding: gzip, or send it uncompressed',
    });
}

/**
 * Reads an upload as a stream of rows, holding at most one line in memory. Row errors are items,
 * not exceptions: a bad row never ends the upload. It throws only when the document as a whole
 * cannot be read (a JSON body that is not an array, a CSV that cannot be tokenized).
 */
export async function* readInput(body: Readable, format: InputFormat, limits: InputLimits): AsyncGenerator<InputItem> {
  // Not UTF-8 at all (UTF-16, gzip sent bare): refused before a row is read, nothing committed.
  const stream = Readable.from(utf8Only(body), { objectMode: false });
  if (format === 'jsonl') {
    for await (const line of splitLines(stream, limits.maxLineBytes)) {
      const item = fromLine(line, limits, limits.maxLineBytes, 'line');
      if (item) yield item;
    }
    return;
  }
  if (format === 'json') return yield* readJsonArray(stream, limits);
  yield* readCsv(stream, limits);
}

async function* readJsonArray(stream: Readable, limits: InputLimits): AsyncGenerator<InputItem> {
  try {
    for await (const element of splitJsonArray(stream, limits.maxLineBytes)) {
      const item = fromLine(element, limits, limits.maxLineBytes, 'element');
      if (item) yield item;
    }
  } catch (e) {
    if (e instanceof JsonArrayError)
      throw new SluiceError('VALIDATION_FAILED', e.message, {
        hint: 'send a JSON array of row objects, or use JSONL',
      });
    throw e;
  }
}

/** CSV with a header row: a record the tokenizer cannot read is its row's error. */
async function* readCsv(stream: Readable, limits: InputLimits): AsyncGenerator<InputItem> {
  const parser = stream.pipe(
    parseCsv({
      columns: true,
      bom: true,
      skip_empty_lines: true,
      info: true,
      max_record_size: limits.maxLineBytes,
      relax_column_count: true,
      // A record the tokenizer cannot read (a stray quote) is that row's error, and reading goes
      // on after it: refusing the upload there left a file that could never finish.
      skip_records_with_error: true,
    }),
  );
  const skipped: InputItem[] = [];
  parser.on('skip', (err: Error & { lines?: number }) => {
    skipped.push({
      line: err.lines ?? 0,
      error: {
        code: 'INPUT_INVALID_CSV',
        message: `record at line ${err.lines ?? '?'} cannot be read: ${err.message}`,
      },
    });
  });
  try {
    for await (const record of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      yield* skipped.splice(0);
      const row = normalizeRow(record.record, limits);
      yield 'code' in row
        ? { line: record.info.lines, error: row, ...customIdOf(record.record) }
        : { line: record.info.lines, row };
    }
    yield* skipped.splice(0);
  } catch (e) {
    const err = e as Error & { code?: string; lines?: number };
    if (typeof err.code === 'string' && err.code.startsWith('CSV_')) {
      throw new SluiceError(
        'VALIDATION_FAILED',
        `the CSV cannot be read${err.lines ? ` at line ${err.lines}` : ''}: ${err.message}`,
        {
          context: { line: err.lines },
          hint: 'check quoting and the header row; the first row names the columns',
        },
      );
    }
    throw err;
  }
}
