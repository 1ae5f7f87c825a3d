import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createAzureAdapter,
  createCompatibleAdapter,
  createGeminiAdapter,
  createOpenAIAdapter,
  ProviderError,
  type ChatRequest,
  type ProviderAdapter,
} from '../src/index.js';

type Dialect = 'openai' | 'azure' | 'gemini' | 'compatible';

/** Keys of each scenario, per dialect: the simulator answers each scenario the way the provider would. */
type Scenario = 'ok' | 'limited' | 'quota' | 'large' | 'error' | 'hang';
const key = (dialect: Dialect, scenario: Scenario) => `${dialect}-${scenario}`;

let sim: ProviderSimServer;
beforeAll(async () => {
  const keys: Record<string, unknown> = {};
  for (const dialect of ['openai', 'azure', 'gemini', 'compatible'] as const) {
    keys[key(dialect, 'ok')] = { dialect, limits: { rpm: 1_000, tpm: 1_000_000 } };
    keys[key(dialect, 'limited')] = { dialect, limits: { rpm: 1 } };
    keys[key(dialect, 'quota')] = { dialect, limits: {}, quotaExhausted: true };
    keys[key(dialect, 'large')] = { dialect, limits: { tpm: 100 } };
    keys[key(dialect, 'error')] = { dialect, limits: {}, faults: { errorRate: 1 } };
    keys[key(dialect, 'hang')] = { dialect, limits: {}, faults: { timeoutRate: 1 } };
  }
  sim = await startProviderSim({ config: { latency: { baseMs: 1, perTokenMs: 0, sigma: 0 }, keys } });
});
afterAll(() => sim.close());

const adapters: Record<Dialect, (apiKey: string) => ProviderAdapter> = {
  openai: (apiKey) => createOpenAIAdapter({ apiKey, baseURL: `${sim.url}/v1` }),
  azure: (apiKey) => createAzureAdapter({ endpoint: sim.url, apiKey, deployments: { 'gpt-4o-mini': 'prod-mini' } }),
  gemini: (apiKey) => createGeminiAdapter({ apiKey, baseUrl: sim.url }),
  compatible: (apiKey) => createCompatibleAdapter({ apiKey, baseURL: `${sim.url}/v1` }),
};

const request = (over: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'Answer briefly.' },
    { role: 'user', content: 'Summarize the quarterly report.' },
  ],
  maxTokens: 40,
  temperature: 0,
  timeoutMs: 5_000,
  ...over,
});

async function failure(adapter: ProviderAdapter, req: ChatRequest): Promise<ProviderError> {
  const err = await adapter.chat(req).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

for (const dialect of ['openai', 'azure', 'gemini', 'compatible'] as const) {
  describe(`${dialect} adapter conformance`, () => {
    const make = (s: Scenario) => adapters[dialect](key(dialect, s));

    it('returns the text, usage and model of a completion', async () => {
      const res = await make('ok').chat(request());
      expect(res.text.length).toBeGreaterThan(0);
      // ceil((15 + 31) / 4) = 12 prompt tokens: the system message counts too.
      expect(res.usage).toMatchObject({ promptTokens: 12 });
      expect(res.usage.completionTokens).toBeGreaterThan(0);
      expect(res.usage.completionTokens).toBeLessThanOrEqual(40);
      expect(res.usage.totalTokens).toBe(res.usage.promptTokens + res.usage.completionTokens);
      expect(JSON.parse(res.body)).toBeTypeOf('object');
      if (dialect === 'openai') expect(res.rate).toMatchObject({ limitRequests: 1_000, remainingRequests: 999 });
      if (dialect === 'azure') expect(res.rate.remainingRequests).toBeGreaterThan(0);
      if (dialect === 'gemini' || dialect === 'compatible') expect(res.rate).toEqual({});
    });

    it('classifies a 429 as rate_limited with the wait the provider asked for', async () => {
      const adapter = make('limited');
      await adapter.chat(request()).catch(() => undefined);
      const err = await failure(adapter, request());
      expect(err.kind).toBe('rate_limited');
      expect(err.retryable).toBe(true);
      expect(err.retryAfterMs).toBeGreaterThan(0);
      // The limit the 429 states (OpenAI's headers and message, Gemini's QuotaFailure); Azure's
      // body and a compatible server's headers state none.
      if (dialect === 'openai' || dialect === 'gemini') expect(err.rate.limitRequests).toBe(1);
      if (dialect === 'azure') expect(err.rate.limitRequests).toBeUndefined();
    });

    it('classifies an exhausted quota as quota_exhausted, never retried', async () => {
      const err = await failure(make('quota'), request());
      expect(err.kind).toBe('quota_exhausted');
      expect(err.retryable).toBe(false);
    });

    it('classifies a request above the limit as request_too_large', async () => {
      const err = await failure(
        make('large'),
        request({ maxTokens: 500, messages: [{ role: 'user', content: 'x'.repeat(800) }] }),
      );
      expect(err.kind).toBe('request_too_large');
      expect(err.retryable).toBe(false);
    });

    it('classifies 5xx and timeouts as transient', async () => {
      expect((await failure(make('error'), request())).kind).toBe('transient');
      const hang = await failure(make('hang'), request({ timeoutMs: 300 }));
      expect(hang.kind).toBe('transient');
    });

    // Regression: the Gemini SDK left its timeout's timer armed after each answered call, holding
    // the call for the whole timeout (bench:e2e: the Gemini dispatcher at twice the RSS of the
    // OpenAI one). No call leaves its deadline behind once it has answered.
    it('leaves no timer armed once its calls have answered', async () => {
      const timeoutMs = 54_321;
      const armed = new Set<unknown>();
      const realSet = globalThis.setTimeout;
      const realClear = globalThis.clearTimeout;
      const set = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
        const t = realSet(fn, ms);
        if (ms === timeoutMs) armed.add(t);
        return t;
      }) as typeof setTimeout);
      const clear = vi.spyOn(globalThis, 'clearTimeout').mockImplementation(((t?: NodeJS.Timeout) => {
        armed.delete(t);
        realClear(t);
      }) as typeof clearTimeout);
      try {
        const adapter = make('ok');
        for (let i = 0; i < 20; i++) await adapter.chat(request({ timeoutMs }));
        await failure(make('error'), request({ timeoutMs }));
      } finally {
        set.mockRestore();
        clear.mockRestore();
      }
      expect(armed.size).toBe(0);
    });

    it('classifies an unknown key as permanent', async () => {
      const err = await failure(adapters[dialect]('no-such-key'), request());
      expect(err.kind).toBe('permanent');
      expect(err.retryable).toBe(false);
    });
  });
}
