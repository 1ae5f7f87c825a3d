import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HashedIdSet } from '../src/input/id-set.js';
import { splitJsonArray } from '../src/input/json-array.js';
import { splitLines } from '../src/input/lines.js';
import { normalizeRow, renderTemplate } from '../src/input/row.js';

const chunks = (...parts: Array<string | Buffer>) =>
  Readable.from(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
const collect = async <T>(it: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
};

describe('splitLines', () => {
  it('splits across chunk boundaries, strips BOM and CR, and reports over-long lines', async () => {
    const lines = await collect(splitLines(chunks('\ufeffab', 'c\r\nde', 'f\n', 'x'.repeat(20), 'y\nlast'), 10));
    expect(lines.map((l) => [l.lineNumber, l.bytes?.toString()])).toEqual([
      [1, 'abc'],
      [2, 'def'],
      [3, undefined],
      [4, 'last'],
    ]);
  });
});

describe('splitJsonArray', () => {
  it('yields each element, whatever brackets and escaped quotes its strings hold', async () => {
    const doc = '[ {"a":"x],{\\"y"} , [1,[2]] ,"s,]" ,3]';
    const parts = await collect(splitJsonArray(chunks(doc.slice(0, 7), doc.slice(7, 19), doc.slice(19)), 100));
    expect(parts.map((p) => JSON.parse(p.bytes!.toString()))).toEqual([{ a: 'x],{"y' }, [1, [2]], 's,]', 3]);
  });

  it('throws when the array ends early', async () => {
    await expect(collect(splitJsonArray(chunks('[{"a":1},{"b"'), 100))).rejects.toThrow(/ends early/);
  });
});

describe('HashedIdSet', () => {
  it('tells new ids from repeated ones across growth', () => {
    const s = new HashedIdSet();
    for (let i = 0; i < 10_000; i++) expect(s.add(`row-${i}`)).toBe(true);
    for (let i = 0; i < 10_000; i += 997) expect(s.add(`row-${i}`)).toBe(false);
    expect(s.size).toBe(10_000);
  });
});

describe('renderTemplate', () => {
  // Regression: the lookup reached Object's prototype, and {{constructor}} rendered "undefined".
  it("reads a row's own fields only: a name Object has is a missing field, not text", () => {
    expect(renderTemplate('Say {{constructor}} to {{name}}', { name: 'Ada' })).toMatchObject({
      code: 'INPUT_TEMPLATE_FIELD_MISSING',
      message: expect.stringContaining('{{constructor}}'),
    });
    expect(renderTemplate('Hi {{toString}}', { toString: 'there' })).toBe('Hi there');
  });
});

describe('normalizeRow', () => {
  const rules = { template: null, maxFields: 3, maxMessages: 2 };
  it('names what is wrong with a row', () => {
    expect(normalizeRow([1], rules)).toMatchObject({
      code: 'INPUT_WRONG_TYPE',
      message: 'a row must be a JSON object, got array',
    });
    expect(normalizeRow({ a: 1, b: 2, c: 3, d: 4 }, rules)).toMatchObject({ code: 'INPUT_TOO_MANY_FIELDS' });
    expect(normalizeRow({ messages: [{ role: 'robot', content: 'x' }] }, rules)).toMatchObject({
      code: 'INPUT_WRONG_TYPE',
      message: expect.stringContaining('messages[0].role'),
    });
    expect(normalizeRow({ prompt: '  ' }, rules)).toMatchObject({ code: 'INPUT_MISSING_PROMPT' });
    expect(normalizeRow({ prompt: 'hi', system: 'be terse' }, rules)).toEqual({
      customId: null,
      model: null,
      overrides: {},
      messages: [
        { role: 'system', content: 'be terse' },
        { role: 'user', content: 'hi' },
      ],
    });
  });
});
