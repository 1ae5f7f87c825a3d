import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../stack/paths.js';

const here = join(repoRoot, 'dev', 'conformance');
const requirements = join(here, 'requirements.txt');

/**
 * The Python of a virtual environment with the conformance suite's clients (requirements.txt),
 * kept under the user's cache (~/.cache/sluice/conformance-venv): made and filled from PyPI the
 * first time, and again when requirements.txt changes.
 */
export function conformancePython(): string {
  const venv = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sluice', 'conformance-venv');
  const python = join(venv, 'bin', 'python');
  const stamp = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  const marker = join(venv, '.sluice-requirements');
  if (existsSync(python) && existsSync(marker) && readFileSync(marker, 'utf8') === stamp) return python;
  if (!existsSync(python)) execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  execFileSync(python, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', requirements], {
    stdio: 'inherit',
  });
  writeFileSync(marker, stamp);
  return python;
}

/**
 * Runs a subcommand of sluice_conformance.py (without blocking: Sluice may run in this process);
 * returns the JSON it prints, or rejects with its stderr.
 */
export function conformance(python: string, args: string[], env: Record<string, string>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-W', 'ignore', join(here, 'sluice_conformance.py'), ...args],
      { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`sluice_conformance.py ${args[0]} failed: ${stderr.slice(-2_000) || err.message}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop()!));
      },
    );
  });
}
