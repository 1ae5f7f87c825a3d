import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: dev/stack/../.. */
export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** Per-checkout state: pid files, logs, data directories and the env file. Ignored by git. */
export const stateDir = process.env['SLUICE_STATE_DIR'] ?? join(repoRoot, '.sluice');
export const runDir = join(stateDir, 'run');
export const logDir = join(stateDir, 'logs');
export const dataDir = join(stateDir, 'data');

/** The one file that tests and Sluice's processes read the stack's connection settings from. */
export const envFile = join(stateDir, 'stack.env');

/** Downloads and built binaries, shared by every checkout so that a warm start is fast. */
export const cacheDir = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sluice');
export const binDir = join(cacheDir, 'bin');
