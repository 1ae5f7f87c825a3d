import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../..', import.meta.url));

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'test' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

describe('Redis keys have one home (libs/job-store/src/keys.ts)', () => {
  it('is the only source file that spells a shared Redis key', () => {
    const literal = /['"`]sluice:(job|tenant|view|lane|idem|upload|quota|dead-letters)\b/;
    const home = join(root, 'libs/job-store/src/keys.ts');
    const offenders: string[] = [];
    for (const dir of ['libs', 'stream-processors', 'ingest-api', 'dev', 'load-tests', 'tools'])
      for (const file of sources(join(root, dir))) {
        if (file === home) continue;
        readFileSync(file, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (literal.test(line)) offenders.push(`${relative(root, file)}:${i + 1}: ${line.trim()}`);
          });
      }
    expect(offenders).toEqual([]);
  });
});
