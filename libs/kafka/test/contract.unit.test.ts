import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { delayTiers, laneProvider, laneTopic, promptId, resultsTopic, tierFor } from '../src/contract.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

/** Every TypeScript source file of the roles, libraries, dev tools and benchmarks (tests aside). */
function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'test' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

describe('the Kafka contract has one home (libs/kafka/src/contract.ts)', () => {
  it('names topics, prompt ids and delay tiers one way', () => {
    expect(laneTopic('openai')).toBe('sluice.requests.openai');
    expect(laneProvider('sluice.requests.openai')).toBe('openai');
    expect(laneProvider('sluice.requests.')).toBeUndefined();
    expect(laneProvider('sluice.results.job_a')).toBeUndefined();
    expect(resultsTopic('job_a')).toBe('sluice.results.job_a');
    expect(promptId('job_a', 7)).toBe('job_a:7');
    expect(tierFor(1)).toBe(delayTiers[0]!.topic);
    expect(tierFor(31_000)).toBe('sluice.delay.2m');
    expect(tierFor(10 ** 9)).toBe(delayTiers[delayTiers.length - 1]!.topic);
  });

  it('is the only source file that spells a topic or header name of the contract', () => {
    const literal =
      /['"`]sluice\.(jobs|requests|results|delay|dead-letter)|['"`]sluice-(due-at|lane|lane-partition|attempts|dl-[a-z]+)['"`]/;
    const home = join(root, 'libs/kafka/src/contract.ts');
    const offenders: string[] = [];
    for (const dir of ['libs', 'stream-processors', 'ingest-api', 'dev', 'load-tests', 'schemas', 'tools'])
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
