/**
 * The naive contender: paces requests at the RPM it is told, and retries a 429 (or any failure)
 * at once. What a hand-written batch script often does. Run as its own process by the benchmark:
 *   tsx naive.ts <url> <apiKey> <rpm> <prompts.jsonl>
 * Stops when every prompt has an answer, or when killed.
 */
import { readFileSync } from 'node:fs';

const [url, apiKey, rpmText, file] = process.argv.slice(2);
if (!url || !apiKey || !rpmText || !file) {
  console.error('usage: naive.ts <chat completions url> <api key> <rpm> <prompts.jsonl>');
  process.exit(2);
}
const rpm = Number(rpmText);
const prompts = readFileSync(file, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Record<string, unknown>);

async function call(body: Record<string, unknown>): Promise<void> {
  for (;;) {
    try {
      const res = await fetch(url!, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(60_000),
      });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // a reset or a timeout: try again, at once, as for a 429
    }
  }
}

const interval = 60_000 / rpm;
const start = Date.now();
const running: Array<Promise<void>> = [];
for (let i = 0; i < prompts.length; i++) {
  const wait = start + i * interval - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  running.push(call(prompts[i]!));
}
await Promise.all(running);
