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

  // Regression: `npm run stack:down -- --help` stopped the stack; the benchmarks threw on --help.
  it('answers --help for the stack, Kafka tools and every benchmark without starting or stopping anything', () => {
    const root = join(import.meta.dirname, '..', '..');
    const scripts = [
      ['dev/stack/cli.ts', 'down'],
      ['dev/stack/kafka-tools.ts'],
      ['load-tests/rate/src/dispatch.ts'],
      ['load-tests/e2e/src/run.ts'],
      ['load-tests/chaos/src/run.ts'],
      ['load-tests/ingest/bench.ts'],
      ['load-tests/rate/src/run.ts'],
      ['load-tests/rate/src/model.ts'],
      ['load-tests/tokenizer/bench.ts'],
      ['load-tests/sim-capacity/bench.ts'],
    ];
    for (const [script, ...args] of scripts) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, script!), ...args, '--help'], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(r.status, script).toBe(0);
      expect(r.stdout, script).toMatch(/npm run|usage|Ingest|Capacity|counting/);
    }
    // Still up: --help stopped nothing.
    const status = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'dev/stack/cli.ts'), 'status'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(status.status, status.stdout).toBe(0);
  }, 120_000);
});
