import { describe, expect, it } from 'vitest';
import type { Job } from '@sluice/schemas';
import { toPromptRequest } from '../src/services/row-request.js';

const job = {
  jobId: 'job_abc',
  tenant: 't1',
  provider: 'openai',
  model: 'gpt-4o-mini',
  priority: 2,
} as Job;

const item = (overrides: Record<string, unknown> = {}, model: string | null = null) => ({
  line: 7,
  row: { customId: 'c-7', messages: [{ role: 'user', content: 'hi' }], model, overrides },
});

describe('toPromptRequest (a row as its lane record)', () => {
  it("takes the job's model and parameters, with the row's overrides on top", () => {
    const r = toPromptRequest(job, item({ temperature: 0.5 }), 6, { maxTokens: 100, temperature: 1 }, ['*'], 42);
    expect(r).toMatchObject({
      jobId: 'job_abc',
      promptId: 'job_abc:6',
      rowIndex: 6,
      tenant: 't1',
      model: 'gpt-4o-mini',
      customId: 'c-7',
      priority: 2,
      submittedAt: 42,
      attempt: 0,
      parameters: { maxTokens: 100, temperature: 0.5, topP: null, stop: null },
    });
  });

  it("refuses a row's model the provider does not serve, and takes one it does", () => {
    expect(toPromptRequest(job, item({}, 'gpt-9'), 0, {}, ['gpt-4o-mini'], 0)).toMatchObject({
      code: 'INPUT_UNKNOWN_MODEL',
    });
    expect(toPromptRequest(job, item({}, 'gpt-4o'), 0, {}, ['gpt-4o', 'gpt-4o-mini'], 0)).toMatchObject({
      model: 'gpt-4o',
    });
  });

  it('refuses numbers out of range or of the wrong type, naming the field', () => {
    expect(toPromptRequest(job, item({ temperature: 3 }), 0, {}, ['*'], 0)).toEqual({
      code: 'INPUT_OUT_OF_RANGE',
      message: 'temperature must be from 0 to 2, got 3',
    });
    expect(toPromptRequest(job, item({ max_tokens: 1.5 }), 0, {}, ['*'], 0)).toMatchObject({
      code: 'INPUT_WRONG_TYPE',
      message: 'max_tokens must be a whole number, got 1.5',
    });
    expect(toPromptRequest(job, item({ stop: 5 }), 0, {}, ['*'], 0)).toMatchObject({ code: 'INPUT_WRONG_TYPE' });
  });
});
