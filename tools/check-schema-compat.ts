/**
 * CI check: every schema in schemas/avro stays BACKWARD compatible with every committed version of
 * itself (transitively: old records may stay in topics for their whole retention). Exits 1 and
 * names the field on the first incompatibility.
 *   npm run schemas:check
 */
import { execFileSync } from 'node:child_process';
import { backwardIncompatibility } from '../schemas/src/compat.js';
import { loadSchemaFiles } from '../schemas/src/schemas.js';

function git(args: string[]): string {
  return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

let failures = 0;
let compared = 0;
for (const { file, schema } of loadSchemaFiles()) {
  const path = `schemas/avro/${file}`;
  let commits: string[] = [];
  try {
    commits = git(['log', '--format=%H', '--', path]).split('\n').filter(Boolean);
  } catch {
    console.warn(`${path}: no git history here; nothing to compare`);
  }
  const seen = new Set<string>();
  for (const commit of commits) {
    const text = git(['show', `${commit}:${path}`]);
    if (seen.has(text)) continue;
    seen.add(text);
    compared++;
    const reason = backwardIncompatibility(schema, JSON.parse(text));
    if (reason) {
      failures++;
      console.error(`${path}: not BACKWARD compatible with its version at ${commit.slice(0, 10)}: ${reason}`);
    }
  }
}
console.log(`${compared} schema version(s) compared, ${failures} incompatible`);
process.exit(failures > 0 ? 1 : 0);
