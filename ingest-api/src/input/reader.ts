import type { Readable } from 'node:stream';
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
  { line: number; row: PromptRow; error?: undefined } | { line: number; error: RowError; row?: undefined }
) & { raw?: Buffer };

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
  const row = normalizeRow(value, rules);
  return 'code' in row ? { line: line.lineNumber, raw, error: row } : { line: line.lineNumber, raw, row };
}

/**
 * Reads an upload as a stream of rows, holding at most one line in memory. Row errors are items,
 * not exceptions: a bad row never ends the upload. It throws only when the document as a whole
 * cannot be read (a JSON body that is not an array, a CSV that cannot be tokenized).
 */
export async function* readInput(
  stream: Readable,
  format: InputFormat,
  limits: InputLimits,
): AsyncGenerator<InputItem> {
  if (format === 'jsonl') {
    for await (const line of splitLines(stream, limits.maxLineBytes)) {
      const item = fromLine(line, limits, limits.maxLineBytes, 'line');
      if (item) yield item;
    }
    return;
  }
  if (format === 'json') {
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
    return;
  }
  const parser = stream.pipe(
    parseCsv({
      columns: true,
      bom: true,
      skip_empty_lines: true,
      info: true,
      max_record_size: limits.maxLineBytes,
      relax_column_count: true,
    }),
  );
  try {
    for await (const record of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      const row = normalizeRow(record.record, limits);
      yield 'code' in row ? { line: record.info.lines, error: row } : { line: record.info.lines, row };
    }
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
