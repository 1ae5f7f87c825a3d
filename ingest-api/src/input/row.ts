import type { ErrorCode } from '@sluice/errors';
import type { Message } from '@sluice/schemas';

/** A row that will become a prompt. */
export interface PromptRow {
  customId: string | null;
  messages: Message[];
  /** The row's own model (OpenAI batch lines carry one); null: the job's. */
  model: string | null;
  /** Per-row parameter overrides (max_tokens, temperature, ...), provider names. */
  overrides: Record<string, unknown>;
}

export interface RowError {
  code: ErrorCode;
  message: string;
}

export interface RowRules {
  /** The job's prompt template, `{{field}}` placeholders over a row's fields. */
  template: string | null;
  /** At most this many fields in a row. @default 64 */
  maxFields: number;
  /** At most this many messages in a row. @default 256 */
  maxMessages: number;
}

const roles = new Set(['system', 'user', 'assistant', 'developer']);
const passThrough = ['max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'response_format', 'stop', 'seed'];

const err = (code: ErrorCode, message: string): RowError => ({ code, message });

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** Renders `{{field}}` placeholders with a row's fields. */
export function renderTemplate(template: string, fields: Record<string, unknown>): string | RowError {
  let missing: string | undefined;
  const text = template.replace(/\{\{\s*([\w.-]+)\s*\}\}/g, (_, name: string) => {
    // The row's own fields only: `{{constructor}}` named Object's and rendered "undefined".
    const v = Object.hasOwn(fields, name) ? fields[name] : undefined;
    // An empty CSV cell is as good as no value: a prompt with a hole in it helps nobody.
    if (v === undefined || v === null || v === '') {
      missing ??= name;
      return '';
    }
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
  if (missing !== undefined) {
    return err(
      'INPUT_TEMPLATE_FIELD_MISSING',
      `the prompt template uses {{${missing}}} but the row has no value for "${missing}"`,
    );
  }
  return text;
}

function parseMessages(v: unknown, where: string, maxMessages: number): Message[] | RowError {
  if (!Array.isArray(v))
    return err('INPUT_WRONG_TYPE', `${where} must be an array of {role, content}, got ${typeName(v)}`);
  if (v.length === 0) return err('INPUT_MISSING_PROMPT', `${where} is empty: give at least one message`);
  if (v.length > maxMessages)
    return err('INPUT_TOO_MANY_FIELDS', `${where} has ${v.length} messages; at most ${maxMessages}`);
  const out: Message[] = [];
  for (let i = 0; i < v.length; i++) {
    const m = v[i] as Record<string, unknown> | null;
    if (!m || typeof m !== 'object' || Array.isArray(m)) {
      return err('INPUT_WRONG_TYPE', `${where}[${i}] must be an object {role, content}, got ${typeName(m)}`);
    }
    if (typeof m['role'] !== 'string' || !roles.has(m['role'])) {
      return err('INPUT_WRONG_TYPE', `${where}[${i}].role must be one of ${[...roles].join(', ')}`);
    }
    let content = m['content'];
    if (Array.isArray(content)) {
      // Content parts: only text parts carry a prompt here.
      content = content.map((p) => (p && typeof p === 'object' && typeof p.text === 'string' ? p.text : '')).join('');
    }
    if (typeof content !== 'string') {
      return err('INPUT_WRONG_TYPE', `${where}[${i}].content must be a string, got ${typeName(content)}`);
    }
    out.push({ role: m['role'], content });
  }
  return out;
}

/**
 * Turns one parsed input row into a prompt, or an error that says what is wrong with it. Rows:
 * `{custom_id?, prompt, system?}`, `{custom_id?, messages}`, OpenAI batch lines
 * `{custom_id, method, url, body: {model?, messages, ...}}`, or any object of fields when the job
 * has a prompt template.
 */
export function normalizeRow(value: unknown, rules: RowRules): PromptRow | RowError {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return err('INPUT_WRONG_TYPE', `a row must be a JSON object, got ${typeName(value)}`);
  }
  const row = value as Record<string, unknown>;
  const keys = Object.keys(row);
  if (keys.length > rules.maxFields) {
    return err('INPUT_TOO_MANY_FIELDS', `the row has ${keys.length} fields; at most ${rules.maxFields}`);
  }
  const customIdRaw = row['custom_id'];
  if (
    customIdRaw !== undefined &&
    customIdRaw !== null &&
    typeof customIdRaw !== 'string' &&
    typeof customIdRaw !== 'number'
  ) {
    return err('INPUT_WRONG_TYPE', `custom_id must be a string, got ${typeName(customIdRaw)}`);
  }
  const customId = customIdRaw === undefined || customIdRaw === null ? null : String(customIdRaw);

  // OpenAI batch line
  if (row['body'] !== undefined && (row['url'] !== undefined || row['method'] !== undefined))
    return batchLine(row, customId, rules);

  const overrides: Record<string, unknown> = {};
  for (const k of passThrough) if (row[k] !== undefined) overrides[k] = row[k];
  if (row['messages'] !== undefined) {
    const messages = parseMessages(row['messages'], 'messages', rules.maxMessages);
    if ('code' in messages) return messages;
    return { customId, messages, model: null, overrides };
  }
  const messages = promptMessages(row, rules);
  if ('code' in messages) return messages;
  return { customId, messages, model: null, overrides };
}

/** An OpenAI batch line: `{custom_id, method, url, body: {model?, messages, ...}}`. */
function batchLine(row: Record<string, unknown>, customId: string | null, rules: RowRules): PromptRow | RowError {
  const body = row['body'] as Record<string, unknown> | null;
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return err('INPUT_WRONG_TYPE', `body must be an object, got ${typeName(body)}`);
  }
  if (row['url'] !== undefined && row['url'] !== '/v1/chat/completions') {
    return err('INPUT_WRONG_TYPE', `url must be /v1/chat/completions, got ${JSON.stringify(row['url'])}`);
  }
  if (body['messages'] === undefined) return err('INPUT_MISSING_PROMPT', 'body.messages is missing');
  const messages = parseMessages(body['messages'], 'body.messages', rules.maxMessages);
  if ('code' in messages) return messages;
  const overrides: Record<string, unknown> = {};
  for (const k of passThrough) if (body[k] !== undefined) overrides[k] = body[k];
  if (body['model'] !== undefined && typeof body['model'] !== 'string') {
    return err('INPUT_WRONG_TYPE', `body.model must be a string, got ${typeName(body['model'])}`);
  }
  return { customId, messages, model: (body['model'] as string | undefined) ?? null, overrides };
}

/** A row's `prompt` (or its template rendered) and `system`, as messages. */
function promptMessages(row: Record<string, unknown>, rules: RowRules): Message[] | RowError {
  let prompt = row['prompt'];
  if (prompt === undefined && rules.template !== null) {
    const rendered = renderTemplate(rules.template, row);
    if (typeof rendered !== 'string') return rendered;
    prompt = rendered;
  }
  if (prompt === undefined || prompt === null) {
    return err(
      'INPUT_MISSING_PROMPT',
      'the row has no prompt: give "prompt" (a string), "messages" (an array), an OpenAI batch "body", ' +
        'or create the job with a promptTemplate',
    );
  }
  if (typeof prompt !== 'string') return err('INPUT_WRONG_TYPE', `prompt must be a string, got ${typeName(prompt)}`);
  if (prompt.trim() === '') return err('INPUT_MISSING_PROMPT', 'prompt is empty');
  const messages: Message[] = [];
  if (row['system'] !== undefined) {
    if (typeof row['system'] !== 'string')
      return err('INPUT_WRONG_TYPE', `system must be a string, got ${typeName(row['system'])}`);
    messages.push({ role: 'system', content: row['system'] });
  }
  messages.push({ role: 'user', content: prompt });
  return messages;
}
