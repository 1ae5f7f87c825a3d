/**
 * The bad-input corpus: one JSONL line of each kind of bad row the API knows, between good rows,
 * with what each must end as. ingest-api's bad-input test reads it through the API; the fault
 * suite's `bad-input` scenario runs it through a whole job, to the files.
 */
export interface CorpusLine {
  /** The line's bytes, without its newline. */
  bytes: Buffer;
  /** The error code the row ends with; absent for a good row. */
  code?: string;
  /** The custom_id its outcome carries (null where none can be read from it). */
  customId: string | null;
  /** A blank line: no row at all. */
  blank?: boolean;
}

const line = (text: string, customId: string | null, code?: string): CorpusLine => ({
  bytes: Buffer.from(text),
  customId,
  ...(code ? { code } : {}),
});

export const badRowCorpus: CorpusLine[] = [
  line('{"custom_id":"ok-1","prompt":"fine"}', 'ok-1'),
  line('{"custom_id":"bad-json","prompt":"unterminated}', null, 'INPUT_INVALID_JSON'),
  line('{"custom_id":"no-prompt","text":"where is the prompt"}', 'no-prompt', 'INPUT_MISSING_PROMPT'),
  line('{"custom_id":"wrong-type","prompt":42}', 'wrong-type', 'INPUT_WRONG_TYPE'),
  line(`{"custom_id":"huge","prompt":"${'x'.repeat(5 * 1024 * 1024)}"}`, null, 'INPUT_LINE_TOO_LONG'),
  {
    bytes: Buffer.concat([Buffer.from('{"custom_id":"utf8","prompt":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
    customId: null,
    code: 'INPUT_INVALID_UTF8',
  },
  line('{"custom_id":"ok-1","prompt":"same id again"}', 'ok-1', 'INPUT_DUPLICATE_CUSTOM_ID'),
  line(
    '{"custom_id":"bad-model","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-nope","messages":[{"role":"user","content":"x"}]}}',
    'bad-model',
    'INPUT_UNKNOWN_MODEL',
  ),
  line('{"custom_id":"bad-param","prompt":"x","max_tokens":"many"}', 'bad-param', 'INPUT_WRONG_TYPE'),
  line('{"custom_id":"hot","prompt":"x","temperature":3}', 'hot', 'INPUT_OUT_OF_RANGE'),
  line('{"custom_id":"none","prompt":"x","max_tokens":0}', 'none', 'INPUT_OUT_OF_RANGE'),
  { bytes: Buffer.alloc(0), customId: null, blank: true },
  line('{"custom_id":"ok-2","prompt":"also fine"}\r', 'ok-2'),
  line('{"custom_id":"s\\udc00","prompt":"a lone surrogate in the id"}', null, 'INPUT_INVALID_UNICODE'),
  line('{"custom_id":"lone","prompt":"lone \\ud800 here"}', 'lone', 'INPUT_INVALID_UNICODE'),
  line('{"custom_id":"pair","prompt":"\\ud83d\\ude00 and \\u0000"}', 'pair'),
  line(`{"custom_id":"deep","prompt":"nested","meta":${'['.repeat(5_000)}${']'.repeat(5_000)}}`, 'deep'),
];

/** The corpus as one upload (a byte order mark first), and its rows (blank lines are none) in order. */
export function corpusUpload(): { body: Buffer; rows: CorpusLine[] } {
  const body = Buffer.concat([
    Buffer.from([0xef, 0xbb, 0xbf]),
    ...badRowCorpus.flatMap((l) => [l.bytes, Buffer.from('\n')]),
  ]);
  return { body, rows: badRowCorpus.filter((l) => !l.blank) };
}
