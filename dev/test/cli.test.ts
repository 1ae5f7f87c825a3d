import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const cli = join(import.meta.dirname, '..', 'sluice', 'cli.ts');
const sluice = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('the sluice CLI', () => {
  // Regression: `npm run sluice -- dev --help` failed with "Unknown option '--help'".
  it('answers --help for every command with its usage, and exits 0', () => {
    for (const args of [['--help'], ['dev', '--help'], ['demo', '-h']]) {
      const r = sluice(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/sluice dev {2}\[--provider sim\|openai\]/);
    }
  });

  it('refuses an unknown option with a pointer to --help, exit 2', () => {
    const r = sluice('dev', '--bogus');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--bogus' \(sluice dev --help lists the options\)/);
  });
});
