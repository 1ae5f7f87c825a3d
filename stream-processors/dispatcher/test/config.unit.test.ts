import { describe, expect, it } from 'vitest';
import { loadDispatcherConfig } from '../src/config.js';

const base = {
  SLUICE_KAFKA_BROKERS: '127.0.0.1:29092',
  SLUICE_REDIS_URL: 'redis://127.0.0.1:26379',
  SLUICE_SCHEMA_REGISTRY_URL: 'http://127.0.0.1:28081',
  SLUICE_PROVIDER: 'openai',
  SLUICE_PROVIDER_API_KEY: 'sk-secret',
};

describe('dispatcher config', () => {
  it('reads the lane, limits and defaults', () => {
    const c = loadDispatcherConfig({
      ...base,
      SLUICE_MODEL_LIMITS: '{"gpt-4o-mini":{"requestsPerMinute":500,"tokensPerMinute":200000}}',
    });
    expect(c.keys).toEqual([{ keyId: 'openai-default', apiKey: base.SLUICE_PROVIDER_API_KEY, baseUrl: undefined }]);
    expect(c).toMatchObject({
      provider: 'openai',
      concurrency: 2_048,
      maxAttempts: 6,
      callTimeoutMs: 60_000,
      tokenizer: 'o200k_base',
    });
    expect(c.modelLimits['gpt-4o-mini']).toEqual({ requestsPerMinute: 500, tokensPerMinute: 200_000 });
  });

  it('says what is wrong and how to fix it', () => {
    expect(() => loadDispatcherConfig({ ...base, SLUICE_PROVIDER: 'anthropic' })).toThrow(
      /SLUICE_PROVIDER=anthropic: give one of openai, azure, gemini, compatible/,
    );
    expect(() => loadDispatcherConfig({ ...base, SLUICE_PROVIDER_API_KEY: '' })).toThrow(
      /SLUICE_PROVIDER_API_KEY is not set/,
    );
    expect(() => loadDispatcherConfig({ ...base, SLUICE_DISPATCH_CONCURRENCY: 'lots' })).toThrow(/whole number/);
    expect(() => loadDispatcherConfig({ ...base, SLUICE_TOKENIZER: 'p50k' })).toThrow(
      /SLUICE_TOKENIZER=p50k: give one of o200k_base, cl100k_base, chars/,
    );
    expect(() => loadDispatcherConfig({ ...base, SLUICE_MODEL_LIMITS: '{oops' })).toThrow(
      /SLUICE_MODEL_LIMITS is not JSON/,
    );
    // Every bad setting at once, so that one restart fixes them all.
    expect(() =>
      loadDispatcherConfig({
        ...base,
        SLUICE_PROVIDER: 'anthropic',
        SLUICE_MAX_ATTEMPTS: '0',
        SLUICE_TOKENIZER: 'p50k',
      }),
    ).toThrow(
      /^3 settings of the dispatcher are not valid:\n {2}SLUICE_PROVIDER=anthropic.*\n {2}SLUICE_TOKENIZER=p50k.*\n {2}SLUICE_MAX_ATTEMPTS=0/s,
    );
  });

  it('reads a pool of keys, each named, with the base URL as its default', () => {
    const c = loadDispatcherConfig({
      ...base,
      SLUICE_PROVIDER_API_KEY: '',
      SLUICE_PROVIDER_BASE_URL: 'https://api.example/v1',
      SLUICE_PROVIDER_KEYS: JSON.stringify([
        { id: 'east', apiKey: 'sk-east', baseUrl: 'https://east.example/v1' },
        { id: 'west', apiKey: 'sk-west' },
      ]),
    });
    expect(c.keys).toEqual([
      { keyId: 'east', apiKey: 'sk-east', baseUrl: 'https://east.example/v1' },
      { keyId: 'west', apiKey: 'sk-west', baseUrl: 'https://api.example/v1' },
    ]);
  });

  it("names the pool entry that is wrong, never a key's value", () => {
    const bad = (keys: unknown) => () =>
      loadDispatcherConfig({ ...base, SLUICE_PROVIDER_KEYS: typeof keys === 'string' ? keys : JSON.stringify(keys) });
    expect(bad('[{')).toThrow(/SLUICE_PROVIDER_KEYS is not JSON/);
    expect(bad([])).toThrow(/non-empty JSON array/);
    expect(bad([{ id: 'a', apiKey: 'sk-a' }, { apiKey: 'sk-hidden' }])).toThrow(
      /SLUICE_PROVIDER_KEYS\[1\] needs a string "id"/,
    );
    expect(bad([{ id: 'a', apiKey: 'sk-a' }, { apiKey: 'sk-hidden' }])).not.toThrow(/sk-hidden/);
    expect(
      bad([
        { id: 'a', apiKey: 'sk-a' },
        { id: 'a', apiKey: 'sk-b' },
      ]),
    ).toThrow(/the id "a" is used twice/);
  });
});
