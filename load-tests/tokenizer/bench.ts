/**
 * What counting prompt tokens costs the dispatcher: for each counter (o200k_base, cl100k_base, and
 * characters / 4), in a fresh process each, the time to load it, the process's RSS before and after,
 * and the median microseconds per prompt over rounds of 5,000 generated prompts (about 1 kB each,
 * English, Japanese and code mixed).
 *
 *   npm run bench:tokenizer -- [--rounds 5] [--json FILE]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadTokenCounter, tokenizerNames, type TokenizerName } from '../../libs/rate-limit/src/index.js';
import { helpIfAsked } from '@sluice/testing';

const here = fileURLToPath(import.meta.url);
const root = resolve(dirname(here), '..', '..');
helpIfAsked(import.meta.url);
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    json: { type: 'string', default: join(root, 'load-tests/results/tokenizer.json') },
    child: { type: 'string' },
  },
});

interface Figures {
  counter: TokenizerName;
  loadMs: number;
  rssBeforeMB: number;
  rssAfterLoadMB: number;
  microsPerPrompt: number;
  charsPerToken: number;
}

function prompts(n: number): Array<Array<{ content: string }>> {
  const parts = [
    'The quarterly report shows revenue grew in every region, led by demand for batch services. ',
    '東京の天気は晴れで、午後から少し雲が増える見込みです。',
    'const xs = [1, 2, 3].map((x) => x * 2);\n',
  ];
  let seed = 7;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648);
  return Array.from({ length: n }, () => {
    let s = '';
    while (s.length < 1_000) s += parts[next() % parts.length] + String(next() % 1_000) + ' ';
    return [{ content: s }];
  });
}

async function child(name: TokenizerName, rounds: number): Promise<Figures> {
  const mb = () => Math.round(process.memoryUsage().rss / 1e5) / 10;
  const input = prompts(5_000);
  const rssBeforeMB = mb();
  const t0 = performance.now();
  const counter = await loadTokenCounter(name);
  const loadMs = performance.now() - t0;
  const rssAfterLoadMB = mb();
  const per: number[] = [];
  let tokens = 0;
  let chars = 0;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (const p of input) {
      tokens += counter.count(p);
      chars += p[0]!.content.length;
    }
    per.push(((performance.now() - t) * 1_000) / input.length);
  }
  per.sort((a, b) => a - b);
  return {
    counter: name,
    loadMs: Math.round(loadMs),
    rssBeforeMB,
    rssAfterLoadMB,
    microsPerPrompt: Math.round(per[Math.floor(per.length / 2)]! * 10) / 10,
    charsPerToken: Math.round((chars / tokens) * 100) / 100,
  };
}

if (values.child) {
  process.stdout.write(JSON.stringify(await child(values.child as TokenizerName, Number(values.rounds))));
} else {
  const results: Figures[] = [];
  for (const name of tokenizerNames) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', here, '--child', name, '--rounds', values.rounds!], {
      encoding: 'utf8',
    });
    const f = JSON.parse(out) as Figures;
    results.push(f);
    console.log(
      `${f.counter.padEnd(12)} load ${f.loadMs} ms; RSS ${f.rssBeforeMB} → ${f.rssAfterLoadMB} MB; ` +
        `${f.microsPerPrompt} µs per 1 kB prompt (median of ${values.rounds} rounds); ${f.charsPerToken} chars per token`,
    );
  }
  mkdirSync(dirname(values.json!), { recursive: true });
  writeFileSync(
    values.json!,
    JSON.stringify({ at: new Date().toISOString(), rounds: Number(values.rounds), results }, null, 2) + '\n',
  );
  console.log(`written to ${values.json}`);
}
