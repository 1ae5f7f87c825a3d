import OpenAI, { InternalServerError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProviderSim, type ProviderSimServer } from '../src/index.js';

describe('faults', () => {
  let sim: ProviderSimServer;
  beforeAll(async () => {
    sim = await startProviderSim({
      config: {
        latency: { baseMs: 1, perTokenMs: 0, sigma: 0 },
        keys: {
          'sk-outage': {
            dialect: 'openai',
            limits: { rpm: 2 },
            faults: { outages: [{ startMs: 0, durationMs: 60_000 }] },
          },
          'sk-slow': { dialect: 'openai', limits: {}, faults: { slowBodyRate: 1 } },
          'sk-flaky': { dialect: 'openai', limits: { rpm: 1 }, faults: { errorRate: 1 } },
        },
      },
    });
  });
  afterAll(() => sim.close());
  const ask = (apiKey: string) =>
    new OpenAI({ apiKey, baseURL: `${sim.url}/v1`, maxRetries: 0 }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Tell me about the weather in a long answer.' }],
      max_tokens: 200,
    });

  it('answers 503 to every request during an outage, without spending the limits', async () => {
    for (let i = 0; i < 4; i++) {
      const err = await ask('sk-outage').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InternalServerError);
      expect((err as InternalServerError).status).toBe(503);
    }
    const rows = sim.sim.ledger.since(0).filter((r) => r.key === 'sk-outage');
    expect(rows.map((r) => r.reason)).toEqual(['outage', 'outage', 'outage', 'outage']);
    // The rate headers on the last 503 still show the whole limit: nothing was spent.
    const last = (await ask('sk-outage').catch((e: unknown) => e)) as InternalServerError;
    expect(last.headers?.get('x-ratelimit-remaining-requests')).toBe('2');
  });

  it('dribbles a slow body that the SDK still reads whole', async () => {
    const started = Date.now();
    const res = await ask('sk-slow');
    // Over 64 bytes per 50 ms, a body of several hundred bytes takes a few hundred ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(res.usage?.completion_tokens).toBeGreaterThan(0);
    expect(res.choices[0]?.message.content?.length).toBe((res.usage?.completion_tokens ?? 0) * 4);
  });

  it('does not charge 500s against the rate limit', async () => {
    let last: InternalServerError | undefined;
    for (let i = 0; i < 3; i++) {
      last = (await ask('sk-flaky').catch((e: unknown) => e)) as InternalServerError;
      expect(last).toBeInstanceOf(InternalServerError);
    }
    expect(last?.headers?.get('x-ratelimit-limit-requests')).toBe('1');
    expect(last?.headers?.get('x-ratelimit-remaining-requests')).toBe('1');
  });
});
