import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, parseEnvFile } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../stack/paths.js';
import { pubsubRoundTrip } from './pubsub-round-trip.js';

/** This file's servers take ports from 12000-20000 (other tests use other ranges). */
const nextPort = () => freePort(12_000, 20_000);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * A second, smaller stack in its own state directory and on its own ports, so that its whole life
 * (up, up again, status, down) can be checked without touching the stack the other tests use.
 * Its Pub/Sub is the pstest fallback, which machines without gcloud's emulator run.
 */
describe('stack:up / stack:status / stack:down', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sluice-stack-test-'));
  let env: NodeJS.ProcessEnv;

  const stack = (command: 'up' | 'down' | 'status') => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'dev/stack/cli.ts'), command], {
      cwd: repoRoot,
      env,
      encoding: 'utf8',
      timeout: 170_000,
    });
    return { code: result.status, out: `${result.stdout}${result.stderr}` };
  };
  const pids = () =>
    Object.fromEntries(
      ['redis', 'gcs', 'pubsub', 'schema-registry'].map((name) => {
        const file = join(stateDir, 'run', `${name}.pid`);
        return [name, existsSync(file) ? Number(readFileSync(file, 'utf8').split('\n')[0]) : undefined];
      }),
    );

  beforeAll(async () => {
    env = {
      ...process.env,
      SLUICE_STATE_DIR: stateDir,
      SLUICE_STACK_SERVICES: 'redis,gcs,pubsub,schema-registry',
      SLUICE_PUBSUB_IMPL: 'pstest',
      SLUICE_REDIS_PORT: String(await nextPort()),
      SLUICE_GCS_PORT: String(await nextPort()),
      SLUICE_PUBSUB_PORT: String(await nextPort()),
      SLUICE_SCHEMA_REGISTRY_PORT: String(await nextPort()),
    };
  });

  afterAll(() => {
    if (env) stack('down');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('starts, notices running services on a second up, reports status, and stops only its own processes', async () => {
    const first = stack('up');
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/redis: started/);
    const started = pids();
    for (const pid of Object.values(started)) expect(pid && alive(pid)).toBe(true);

    const second = stack('up');
    expect(second.code, second.out).toBe(0);
    for (const name of ['redis', 'gcs', 'pubsub', 'schema-registry']) {
      expect(second.out).toContain(`${name}: already running (pid ${started[name]})`);
    }
    expect(pids()).toEqual(started);

    const status = stack('status');
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/pubsub\s+running.*pstest fallback/);

    const settings = parseEnvFile(readFileSync(join(stateDir, 'stack.env'), 'utf8'));
    expect(settings['PUBSUB_EMULATOR_HOST']).toBe(`127.0.0.1:${env['SLUICE_PUBSUB_PORT']}`);
    const messages = await pubsubRoundTrip(settings['PUBSUB_EMULATOR_HOST'] ?? '', 'sluice-stack-test');
    expect(messages.map((m) => m.attributes['jobId']).sort()).toEqual(['job-1', 'job-2']);

    const down = stack('down');
    expect(down.code).toBe(0);
    for (const pid of Object.values(started)) expect(alive(pid ?? -1)).toBe(false);
    expect(Object.values(pids()).every((pid) => pid === undefined)).toBe(true);
    expect(stack('status').code).toBe(3);
  });

  // Regression: the registry kept its schemas in memory while Kafka kept its records on disk; after
  // a restart of the stack the ids in old records named other schemas, and the sink read every old
  // job event as undecodable.
  it('keeps every schema under the id it had across a restart of the stack', async () => {
    expect(stack('up').code).toBe(0);
    const url = () =>
      parseEnvFile(readFileSync(join(stateDir, 'stack.env'), 'utf8'))['SLUICE_SCHEMA_REGISTRY_URL'] ?? '';
    // A connection kept alive from before the restart is closed under the first request after it.
    const post = (u: string, init: RequestInit) => fetch(u, init).catch(() => fetch(u, init));
    const register = async (subject: string, name: string) => {
      const res = await post(`${url()}/subjects/${subject}/versions`, {
        method: 'POST',
        headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
        body: JSON.stringify({
          schema: JSON.stringify({ type: 'record', name, fields: [{ name: 'x', type: 'int' }] }),
        }),
      });
      return ((await res.json()) as { id: number }).id;
    };
    const a = await register('restart-a', 'A');
    const b = await register('restart-b', 'B');
    expect(stack('down').code).toBe(0);
    expect(stack('up').code).toBe(0);
    // A schema registered first after the restart gets a new id, not one of the old ones.
    const c = await register('restart-c', 'C');
    expect([a, b]).not.toContain(c);
    const schema = (await (await post(`${url()}/schemas/ids/${b}`, {})).json()) as { schema: string };
    expect(JSON.parse(schema.schema).name).toBe('B');
    expect(await register('restart-a', 'A')).toBe(a);
    expect(stack('down').code).toBe(0);
  });

  it('refuses to start a service whose port another process holds, and says which variable moves it', async () => {
    const squatter = createServer();
    const port = await nextPort();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    try {
      const previous = env;
      const otherState = mkdtempSync(join(tmpdir(), 'sluice-stack-test-'));
      env = {
        ...previous,
        SLUICE_STATE_DIR: otherState,
        SLUICE_STACK_SERVICES: 'redis',
        SLUICE_REDIS_PORT: String(port),
      };
      const result = stack('up');
      env = previous;
      rmSync(otherState, { recursive: true, force: true });
      expect(result.code).toBe(1);
      expect(result.out).toContain(`port ${port} is already in use`);
      expect(result.out).toContain('SLUICE_*_PORT');
    } finally {
      squatter.close();
    }
  });
});
