import OpenAI, {
  APIConnectionError,
  APIError,
  APIConnectionTimeoutError,
  InternalServerError,
  RateLimitError,
} from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProviderSim, type ProviderSimServer } from '../src/index.js';

describe('OpenAI dialect, through the official openai SDK', () => {
  let sim: ProviderSimServer;
  const client = (apiKey: string, timeout = 10_000) =>
    new OpenAI({ apiKey, baseURL: `${sim.url}/v1`, maxRetries: 0, timeout });
  const ask = (apiKey: string, content = 'Classify the sentiment of this headline.', max_tokens = 50) =>
    client(apiKey).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens });

  beforeAll(async () => {
    sim = await startProviderSim({
      config: {
        seed: 42,
        latency: { baseMs: 1, perTokenMs: 0, sigma: 0 },
        keys: {
          'sk-rpm': { dialect: 'openai', limits: { rpm: 2, tpm: 1_000_000 } },
          'sk-seed': { dialect: 'openai', limits: {} },
          'sk-tpm': { dialect: 'openai', limits: { rpm: 1_000, tpm: 200 } },
          'sk-broke': { dialect: 'openai', limits: {}, quotaExhausted: true },
          'sk-500': { dialect: 'openai', limits: {}, faults: { errorRate: 1 } },
          'sk-hang': { dialect: 'openai', limits: {}, faults: { timeoutRate: 1 } },
          'sk-reset': { dialect: 'openai', limits: {}, faults: { resetRate: 1 } },
          'sk-bad-json': { dialect: 'openai', limits: {}, faults: { malformedRate: 1 } },
        },
      },
    });
  });
  afterAll(() => sim.close());

  it('answers with a chat completion, usage and x-ratelimit headers in Go durations', async () => {
    const prompt = 'Classify the sentiment of this headline.'; // 40 chars = 10 provider tokens
    const { data, response } = await ask('sk-rpm', prompt, 50).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.model).toBe('gpt-4o-mini');
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(data.usage?.prompt_tokens).toBe(10);
    expect(data.usage?.completion_tokens).toBeLessThanOrEqual(50);
    expect(data.usage?.total_tokens).toBe((data.usage?.prompt_tokens ?? 0) + (data.usage?.completion_tokens ?? 0));
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?s$/);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('1000000');
    expect(response.headers.get('x-ratelimit-remaining-tokens')).toBe(String(1_000_000 - 60));
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('gives the same completion for the same seed and prompt', async () => {
    const a = await ask('sk-seed', 'What is the capital of France?', 20);
    const b = await ask('sk-seed', 'What is the capital of France?', 20);
    expect(b.choices[0]?.message.content).toBe(a.choices[0]?.message.content);
  });

  it('rejects past the RPM limit with a RateLimitError, retry-after and the limit in the message', async () => {
    await ask('sk-rpm').catch(() => undefined); // the second request of the minute, if the first test ran
    const err = await ask('sk-rpm').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RateLimitError);
    const e = err as RateLimitError;
    expect(e.status).toBe(429);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.type).toBe('requests');
    expect(e.message).toMatch(
      /on requests per min \(RPM\): Limit 2, Used 2, Requested 1\. Please try again in [\d.]+m?s\./,
    );
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('rejects past the TPM limit with type tokens, and a request larger than the limit as too large', async () => {
    // Cost = ceil(chars/4) + max_tokens: 10 + 150 = 160 of 200, then 160 more does not fit.
    await ask('sk-tpm', 'Classify the sentiment of this headline.', 150);
    const tokens = await ask('sk-tpm', 'Classify the sentiment of this headline.', 150).catch((e: unknown) => e);
    expect(tokens).toBeInstanceOf(RateLimitError);
    expect((tokens as RateLimitError).type).toBe('tokens');
    expect((tokens as RateLimitError).message).toMatch(/tokens per min \(TPM\): Limit 200, Used \d+, Requested 160/);

    const tooLarge = await ask('sk-tpm', 'x'.repeat(400), 150).catch((e: unknown) => e);
    expect(tooLarge).toBeInstanceOf(RateLimitError);
    expect((tooLarge as RateLimitError).message).toMatch(
      /^429 Request too large for gpt-4o-mini .* Limit 200, Requested 250\./,
    );
  });

  it('answers insufficient_quota on an exhausted key, every time', async () => {
    for (let i = 0; i < 2; i++) {
      const err = await ask('sk-broke').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RateLimitError);
      expect((err as RateLimitError).code).toBe('insufficient_quota');
      expect((err as RateLimitError).type).toBe('insufficient_quota');
    }
  });

  it('answers 401 to an unknown key', async () => {
    const err = await ask('sk-nobody').catch((e: unknown) => e);
    expect((err as APIError).status).toBe(401);
    expect((err as APIError).code).toBe('invalid_api_key');
  });

  it('injects 500s, hangs, connection resets and malformed bodies', async () => {
    expect(await ask('sk-500').catch((e: unknown) => e)).toBeInstanceOf(InternalServerError);
    const hang = await client('sk-hang', 300)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(hang).toBeInstanceOf(APIConnectionTimeoutError);
    const reset = await ask('sk-reset').catch((e: unknown) => e);
    expect(reset).toBeInstanceOf(APIConnectionError);
    const bad = await ask('sk-bad-json').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Error);

    const reasons = sim.sim.ledger.stats().flatMap((s) => Object.keys(s.byReason));
    expect(reasons).toEqual(expect.arrayContaining(['error_500', 'timeout', 'reset', 'malformed']));
  });
});
