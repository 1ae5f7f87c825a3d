/**
 * The naive contender: paces requests at the RPM it is told, and retries a 429 (or any failure)
 * at once. What a hand-written batch script often does. Run as its own process by the benchmark:
 *   tsx naive.ts <base url> <apiKey> <rpm> <prompts.jsonl> [openai|azure|gemini|compatible]
 * Stops when every prompt has an answer, or when killed.
 */
import { readFileSync } from 'node:fs';

const [base, apiKey, rpmText, file, dialect = 'openai'] = process.argv.slice(2);
if (!base || !apiKey || !rpmText || !file) {
  console.error('usage: naive.ts <base url> <api key> <rpm> <prompts.jsonl> [dialect]');
  process.exit(2);
}

/** Each dialect's address, auth header and body for one prompt. */
function request(p: Record<string, unknown>): { url: string; headers: Record<string, string>; body: unknown } {
  const model = p['model'] as string;
  const messages = p['messages'] as Array<{ content: string }>;
  if (dialect === 'azure')
    return {
      url: `${base}/openai/deployments/${model}/chat/completions?api-version=2024-10-21`,
      headers: { 'api-key': apiKey! },
      body: { messages, max_tokens: p['max_tokens'] },
    };
  if (dialect === 'gemini')
    return {
      url: `${base}/v1beta/models/${model}:generateContent`,
      headers: { 'x-goog-api-key': apiKey! },
      body: {
        contents: messages.map((m) => ({ role: 'user', parts: [{ text: m.content }] })),
        generationConfig: { maxOutputTokens: p['max_tokens'] },
      },
    };
  return { url: `${base}/v1/chat/completions`, headers: { authorization: `Bearer ${apiKey}` }, body: p };
}
const rpm = Number(rpmText);
const prompts = readFileSync(file, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Record<string, unknown>);

async function call(prompt: Record<string, unknown>): Promise<void> {
  const { url, headers, body } = request(prompt);
  for (;;) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
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
