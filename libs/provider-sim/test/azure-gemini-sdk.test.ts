import { ApiError, GoogleGenAI } from '@google/genai';
import { AzureOpenAI, RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProviderSim, type ProviderSimServer } from '../src/index.js';

let sim: ProviderSimServer;
beforeAll(async () => {
  sim = await startProviderSim({
    config: {
      latency: { baseMs: 1, perTokenMs: 0, sigma: 0 },
      keys: {
        'az-key': { dialect: 'azure', limits: { rpm: 60, tpm: 6_000 } }, // 10 s window: 10 requests, 1,000 tokens
        'az-daily': { dialect: 'azure', limits: { rpd: 1 } },
        'az-quirky': { dialect: 'azure', limits: { rpm: 600, tpm: 60_000 }, minusOneHeaderRate: 1 },
        'gm-key': { dialect: 'gemini', limits: { rpm: 2, tpm: 1_000_000 } },
      },
    },
  });
});
afterAll(() => sim.close());

describe('Azure OpenAI dialect, through the AzureOpenAI client', () => {
  const azure = (apiKey: string) =>
    new AzureOpenAI({ endpoint: sim.url, apiKey, apiVersion: '2024-10-21', deployment: 'gpt-4o-prod', maxRetries: 0 });
  const ask = (apiKey: string, max_tokens = 100) =>
    azure(apiKey).chat.completions.create({
      model: 'gpt-4o-prod',
      messages: [{ role: 'user', content: 'Summarize.' }],
      max_tokens,
    });

  it('answers with usage and remaining-only rate headers over a short window', async () => {
    const { data, response } = await ask('az-key').withResponse();
    expect(data.usage?.prompt_tokens).toBe(3);
    expect(data.model).toBe('gpt-4o-prod');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('9');
    expect(response.headers.get('x-ratelimit-remaining-tokens')).toBe(String(1_000 - 103));
    expect(response.headers.get('x-ratelimit-limit-requests')).toBeNull();
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBeNull();
  });

  it("answers 429 with retry-after and retry-after-ms and Azure's error body", async () => {
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => ask('az-key', 100)));
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    expect(refused.length).toBeGreaterThan(0);
    const e = refused[0] as RateLimitError;
    expect(e).toBeInstanceOf(RateLimitError);
    expect(e.code).toBe('429');
    expect(e.message).toMatch(
      /exceeded (token|call) rate limit of your current OpenAI S0 pricing tier\. Please retry after \d+ seconds/,
    );
    expect(Number(e.headers?.get('retry-after-ms'))).toBeGreaterThan(0);
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('answers a spent daily quota with "retry after 86400 seconds"', async () => {
    await ask('az-daily');
    const e = (await ask('az-daily').catch((err: unknown) => err)) as RateLimitError;
    expect(e).toBeInstanceOf(RateLimitError);
    expect(e.message).toMatch(/daily quota .* Please retry after 86400 seconds/);
    expect(e.headers?.get('retry-after')).toBe('86400');
  });

  it('sometimes writes -1 in a rate header, as Azure does', async () => {
    const { response } = await ask('az-quirky').withResponse();
    expect(response.headers.get('x-ratelimit-remaining-tokens')).toBe('-1');
  });
});

describe('Gemini dialect, through @google/genai', () => {
  const gemini = (apiKey: string) => new GoogleGenAI({ apiKey, httpOptions: { baseUrl: sim.url } });
  const ask = (apiKey: string) =>
    gemini(apiKey).models.generateContent({
      model: 'gemini-2.0-flash',
      contents: 'Extract the ticker symbols from this sentence.',
      config: { maxOutputTokens: 40, systemInstruction: 'Answer in JSON.' },
    });

  it('answers with candidates and usageMetadata, and no rate headers', async () => {
    const res = await ask('gm-key');
    expect(res.text?.length).toBeGreaterThan(0);
    // ceil((46 + 15) / 4) prompt tokens: the system instruction counts too.
    expect(res.usageMetadata?.promptTokenCount).toBe(16);
    expect(res.usageMetadata?.candidatesTokenCount).toBeLessThanOrEqual(40);
    expect(res.candidates?.[0]?.finishReason).toMatch(/STOP|MAX_TOKENS/);
    const raw = await fetch(`${sim.url}/v1beta/models/gemini-2.0-flash:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': 'gm-key', 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    expect([...raw.headers.keys()].filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);
  });

  it('answers RESOURCE_EXHAUSTED with QuotaFailure (quotaId, quotaValue) and RetryInfo', async () => {
    await ask('gm-key').catch(() => undefined);
    const e = (await ask('gm-key').catch((err: unknown) => err)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(429);
    const body = JSON.parse(e.message) as {
      error: {
        status: string;
        details: Array<{
          '@type': string;
          violations?: Array<{ quotaId: string; quotaValue: string }>;
          retryDelay?: string;
        }>;
      };
    };
    expect(body.error.status).toBe('RESOURCE_EXHAUSTED');
    const quota = body.error.details.find((d) => d['@type'].endsWith('QuotaFailure'));
    expect(quota?.violations?.[0]).toMatchObject({
      quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
      quotaValue: '2',
    });
    const retry = body.error.details.find((d) => d['@type'].endsWith('RetryInfo'));
    expect(retry?.retryDelay).toMatch(/^\d+s$/);
  });

  it('rejects an invalid key with API_KEY_INVALID', async () => {
    const e = (await ask('not-a-key').catch((err: unknown) => err)) as ApiError;
    expect(e.status).toBe(400);
    expect(e.message).toContain('API_KEY_INVALID');
  });
});
