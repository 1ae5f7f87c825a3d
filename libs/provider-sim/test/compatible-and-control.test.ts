import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProviderSim, type LedgerRow, type ProviderSimServer } from '../src/index.js';

let sim: ProviderSimServer;
beforeAll(async () => {
  sim = await startProviderSim({ config: { latency: { baseMs: 1, perTokenMs: 0, sigma: 0 } } });
});
afterAll(() => sim.close());

const control = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${sim.url}/_sim${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
};

const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${sim.url}/v1`, maxRetries: 0 });
const ask = (apiKey: string) =>
  client(apiKey).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'ping' }], max_tokens: 10 });

describe('control API', () => {
  it('rejects bad input with a 400 that names the field and what is accepted', async () => {
    const cases: Array<[string, string, unknown, RegExp]> = [
      [
        'PUT',
        '/keys/k1',
        { dialect: 'openapi' },
        /keys\.k1\.dialect: must be one of openai, azure, gemini, compatible/,
      ],
      ['PUT', '/keys/k1', { limits: { rpm: -5 } }, /keys\.k1\.limits\.rpm: must be greater than 0, got -5/],
      [
        'PUT',
        '/keys/k1',
        { limits: { rmp: 5 } },
        /keys\.k1\.limits\.rmp: unknown field; known fields: rpm, tpm, rpd, burstWindowMs/,
      ],
      ['PUT', '/keys/k1', { faults: { errorRate: 2 } }, /faults\.errorRate: must be at most 1, got 2/],
      ['PUT', '/keys/k1', '{not json', /not valid JSON/],
      ['PUT', '/keys/k1', '', /request body is empty/],
      ['PUT', '/config', { keys: [] }, /config\.keys: must be an object, got an array/],
    ];
    for (const [method, path, body, message] of cases) {
      const res = await control(method, path, body);
      expect(res.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(400);
      expect(res.text).toMatch(message);
    }
    expect((await control('PATCH', '/keys/nobody/limits', { rpm: 5 })).status).toBe(404);
    expect((await control('GET', '/ledger?since=-1')).status).toBe(400);
    expect((await control('POST', '/nothing-here', {})).status).toBe(404);
  });

  it('changes limits while running, and the next response shows them', async () => {
    expect((await control('PUT', '/keys/live', { dialect: 'openai', limits: { rpm: 100 } })).status).toBe(200);
    const before = await client('live')
      .chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'a' }] })
      .withResponse();
    expect(before.response.headers.get('x-ratelimit-limit-requests')).toBe('100');
    expect((await control('PATCH', '/keys/live/limits', { rpm: 1 })).status).toBe(200);
    await expect(ask('live')).rejects.toMatchObject({ status: 429 });
  });

  it('follows a limit schedule', async () => {
    await control('PUT', '/keys/scheduled', {
      dialect: 'openai',
      limits: { rpm: 1 },
      schedule: [{ atMs: 0, limits: { rpm: 7 } }],
    });
    const { response } = await client('scheduled')
      .chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'a' }] })
      .withResponse();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('7');
  });

  it('keeps a ledger of every request, as JSONL and as statistics, and resets it', async () => {
    await control('PUT', '/keys/ledger-key', { dialect: 'openai', limits: { rpm: 2 } });
    const outcomes = await Promise.allSettled([ask('ledger-key'), ask('ledger-key'), ask('ledger-key')]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(2);

    const ledger = await control('GET', '/ledger');
    const rows = ledger.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as LedgerRow)
      .filter((r) => r.key === 'ledger-key');
    expect(rows.map((r) => r.reason).sort()).toEqual(['ok', 'ok', 'rpm']);
    expect(rows.every((r) => r.limitRpm === 2 && r.cost === 11 && r.model === 'm')).toBe(true);

    const stats = (await control('GET', '/stats?bucketMs=60000')).json() as {
      keys: Array<{ key: string; requests: number; rateLimitedPer10k: number; series: unknown[] }>;
    };
    const mine = stats.keys.find((k) => k.key === 'ledger-key');
    expect(mine?.requests).toBe(3);
    expect(mine?.rateLimitedPer10k).toBeCloseTo(3_333.33, 1);
    expect(mine?.series).toHaveLength(1);

    expect((await control('POST', '/reset')).status).toBe(200);
    expect((await control('GET', '/ledger')).text).toBe('');
    // Buckets are reset too: the key admits again.
    await expect(ask('ledger-key')).resolves.toBeDefined();
  });
});

describe('OpenAI-compatible (self-hosted) dialect', () => {
  it('sends no rate headers, slows down with requests in flight and answers 503 when overloaded', async () => {
    await control('PUT', '/keys/vllm', {
      dialect: 'compatible',
      limits: {},
      maxInFlight: 4,
      latency: { baseMs: 100, perTokenMs: 0, sigma: 0 },
    });
    const { response } = await client('vllm')
      .chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'a' }] })
      .withResponse();
    expect([...response.headers.keys()].filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);

    await control('POST', '/reset');
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => ask('vllm')));
    const overloaded = results
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason as APIError);
    expect(overloaded).toHaveLength(2);
    expect(overloaded.every((e) => e.status === 503)).toBe(true);

    const rows = (await control('GET', '/ledger')).text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as LedgerRow);
    const served = rows.filter((r) => r.outcome === 'admitted').map((r) => r.latencyMs);
    // 0, 1, 2 and 3 requests already in flight: 100, 125, 150, 175 ms.
    expect(served).toEqual([100, 125, 150, 175]);
  });
});
