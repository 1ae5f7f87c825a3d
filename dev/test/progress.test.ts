import { pino } from 'pino';
import { startProviderSim, type ProviderSimServer } from '@sluice/provider-sim';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDev, type DevRunning } from '../sluice/dev.js';
import { devEnv } from './dev-env.js';

interface Counts {
  total: number | null;
  queued: number;
  invalid: number;
  inFlight: number;
  succeeded: number;
  failed: number;
  retrying: number;
}

/**
 * GET /v1/jobs/{id} counts prompts in a dispatcher's hands (inFlight) and prompts waiting in a
 * delay topic (retrying): they read 0 whatever happened, as nothing wrote them.
 */
describe('progress a user can see', () => {
  const s = stackSettings();
  const tenant = uniqueName('progress');
  const key = `sk-${uniqueName('progress')}`;
  const lane = `progress${Date.now().toString(36)}`;
  let sim: ProviderSimServer;
  let dev: DevRunning;

  beforeAll(async () => {
    sim = await startProviderSim({
      config: {
        seed: 9,
        // Slow answers (prompts stay in hand for a while), and a third of the calls fail with a 500:
        // those prompts wait in a delay topic before they are tried again.
        latency: { baseMs: 1_200, perTokenMs: 0, sigma: 0.2 },
        keys: { 'sk-p': { dialect: 'openai', limits: { rpm: 60_000, tpm: 10_000_000 }, faults: { errorRate: 0.3 } } },
      },
    });
    dev = await startDev({
      env: devEnv(s, { tenant, key, lane, bucket: uniqueName('progress'), topic: uniqueName('progress') }),
      lanes: [{ provider: lane, adapter: 'openai', apiKey: 'sk-p', baseUrl: `${sim.url}/v1` }],
      log: pino({ level: 'warn' }),
      port: 0,
    });
  }, 120_000);

  afterAll(async () => {
    await dev?.close();
    await sim?.close();
  });

  it('shows prompts in flight and retrying while the job runs, every prompt in one count, and none of either once it ends', async () => {
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const created = await fetch(`${dev.url}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ provider: lane, model: 'gpt-4o-mini', parameters: { maxTokens: 8 } }),
    });
    const job = (await created.json()) as { id: string };
    const rows = 300;
    const body = Array.from({ length: rows }, (_, i) => JSON.stringify({ prompt: `row ${i}` })).join('\n');
    const up = await fetch(`${dev.url}/v1/jobs/${job.id}/input`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/jsonl' },
      body,
    });
    expect(up.status).toBe(200);
    const seen = { inFlight: 0, retrying: 0 };
    let last: { status: string; counts: Counts } | undefined;
    await waitFor(
      'the job to complete',
      async () => {
        const r = await fetch(`${dev.url}/v1/jobs/${job.id}`, { headers });
        last = (await r.json()) as { status: string; counts: Counts };
        const c = last.counts;
        // Every prompt is in exactly one count at every moment.
        expect(c.queued + c.inFlight + c.retrying + c.succeeded + c.failed).toBe(rows);
        seen.inFlight = Math.max(seen.inFlight, c.inFlight);
        seen.retrying = Math.max(seen.retrying, c.retrying);
        return last.status.startsWith('completed') ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    expect(seen.inFlight).toBeGreaterThan(10);
    expect(seen.retrying).toBeGreaterThan(0);
    expect(last!.counts).toMatchObject({ queued: 0, inFlight: 0, retrying: 0 });
    expect(last!.counts.succeeded + last!.counts.failed).toBe(rows);
  });
});
