// Writes headlines.jsonl: the demo's bundled input. Deterministic, so the file only changes when
// this script does: npx tsx dev/sluice/examples/make-headlines.ts
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const subjects = [
  'Central bank',
  'City council',
  'Chipmaker',
  'Airline',
  'Start-up',
  'Retailer',
  'Utility',
  'Drugmaker',
  'Carmaker',
  'Port authority',
  'University',
  'Streaming service',
];
const verbs = [
  'raises',
  'cuts',
  'delays',
  'announces',
  'cancels',
  'doubles',
  'freezes',
  'expands',
  'reviews',
  'halves',
];
const objects = [
  'interest rates',
  'its workforce',
  'a new plant',
  'quarterly guidance',
  'ticket prices',
  'its dividend',
  'a merger',
  'research spending',
  'store openings',
  'its climate targets',
];
const places = [
  'in Europe',
  'in Asia',
  'nationwide',
  'after strong sales',
  'amid a strike',
  'despite losses',
  'ahead of elections',
  'for the second time',
  'after a review',
  'under pressure',
];

const system = 'Classify the sentiment of a news headline as positive, negative or neutral. Answer with one word.';
const lines: string[] = [];
// Every fourth of the 12,000 combinations: 3,000 headlines, half as chat messages, half as prompts.
for (let k = 0; lines.length < 3_000; k += 4) {
  const headline = `${subjects[k % 12]} ${verbs[Math.floor(k / 12) % 10]} ${objects[Math.floor(k / 120) % 10]} ${places[Math.floor(k / 1_200) % 10]}`;
  const custom_id = `headline-${String(lines.length).padStart(4, '0')}`;
  lines.push(
    JSON.stringify(
      lines.length % 2 === 0
        ? {
            custom_id,
            messages: [
              { role: 'system', content: system },
              { role: 'user', content: headline },
            ],
            max_tokens: 5,
          }
        : { custom_id, prompt: `${system}\n\nHeadline: ${headline}`, max_tokens: 5 },
    ),
  );
}
// Some bad rows, as real inputs have: each becomes an error record, and the job goes on.
const bad = [
  '{"custom_id": "bad-json", "prompt": "unterminated',
  '{"custom_id": "no-prompt"}',
  '{"custom_id": "wrong-type", "prompt": 42}',
  '{"custom_id": "headline-0001", "prompt": "a custom_id used twice"}',
  '{"custom_id": "bad-tokens", "prompt": "Markets rally", "max_tokens": "many"}',
  '[1, 2, 3]',
  '{"custom_id": "empty-prompt", "prompt": ""}',
];
for (let i = 0; i < bad.length; i++) lines.splice(250 + i * 400, 0, bad[i]!);
writeFileSync(join(import.meta.dirname, 'headlines.jsonl'), lines.join('\n') + '\n');
console.log(`wrote ${lines.length} lines (${bad.length} of them bad)`);
