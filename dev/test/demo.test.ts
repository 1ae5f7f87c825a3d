import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** `npm run demo`, the README's main command, as a user runs it (on fewer rows). */
describe('npm run demo', () => {
  it('submits the bundled example, shows progress, and prints where the results are', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'dev/sluice/cli.ts', 'demo', '--rows', '300'], {
      cwd: root,
      env: { ...process.env, SLUICE_API_KEYS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, out).toBe(0);
    // Row 251 of the example is bad JSON: one error record, and the job goes on.
    expect(out).toMatch(/accepted 299 prompts; 1 bad rows became error records/);
    expect(out).toMatch(/line 251: INPUT_INVALID_JSON/);
    expect(out).toMatch(/\d+ \/ 300 done/);
    expect(out).toMatch(/completed_with_errors \(announced on Pub\/Sub topic/);
    const manifestUri = /manifest: (file:\S+)/.exec(out)?.[1];
    expect(manifestUri, out).toBeDefined();
    const manifest = JSON.parse(readFileSync(fileURLToPath(manifestUri!), 'utf8')) as {
      counts: Record<string, number>;
    };
    expect(manifest.counts).toMatchObject({ total: 300, succeeded: 299, invalid: 1 });
  }, 180_000);
});
