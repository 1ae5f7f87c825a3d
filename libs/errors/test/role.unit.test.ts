import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('./fixtures/idle-role.ts', import.meta.url));

describe('runRole', () => {
  it('keeps a role with no handles of its own alive until it is told to stop, then exits 0', async () => {
    // The delay processor exited 0 without a word once its consumer had crashed and its
    // connections were reset: nothing was left in the event loop.
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 3_000));
    expect(child.exitCode).toBeNull(); // still running
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('idle stopping');
  }, 20_000);
});
