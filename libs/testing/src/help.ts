import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * For a benchmark or tool script: with --help or -h among its arguments, prints the script's
 * first doc comment (its usage) and exits 0, before anything starts.
 */
export function helpIfAsked(scriptUrl: string, argv = process.argv.slice(2)): void {
  if (!argv.some((a) => a === '--help' || a === '-h')) return;
  const text = readFileSync(fileURLToPath(scriptUrl), 'utf8');
  const doc = /\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? '';
  const lines = doc.split('\n').map((l) => l.replace(/^\s*\* ?/, ''));
  console.log(lines.join('\n').trim() || 'no usage written for this script');
  process.exit(0);
}
