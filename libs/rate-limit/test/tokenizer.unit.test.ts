import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { LimitLearner } from '../src/learner.js';
import { charsCounter, loadTokenCounter, type TokenCounter } from '../src/tokenizer.js';

const english =
  'The quarterly report shows revenue grew in every region, led by strong demand for batch processing services. ';
const japanese = '東京の天気は晴れで、午後から少し雲が増える見込みです。週末は雨が降るかもしれません。';
const code = 'function add(a, b) {\n  return a + b;\n}\nconst xs = [1, 2, 3].map((x) => add(x, 1));\n';
const prompt = (text: string, times: number) => [{ content: text.repeat(times) }];

/** Reservation over the provider's count for each kind of text, after a mixed job calibrated `counter`. */
function afterMixedJob(counter: TokenCounter, provider: TokenCounter): number[] {
  const l = new LimitLearner({ configured: {} });
  for (let i = 0; i < 300; i++) {
    const p = prompt([english, japanese, code][i % 3]!, 3 + (i % 5));
    l.reported(counter.count(p), provider.count(p));
  }
  return [english, japanese, code].map((t) => {
    const p = prompt(t, 5);
    return l.estimate(counter.count(p), 0) / provider.count(p);
  });
}

describe('token counters (encodings shipped in the gpt-tokenizer package)', () => {
  it("counts a chat prompt's tokens as OpenAI's chat format does: content + 3 per message + 3", async () => {
    const o200k = await loadTokenCounter('o200k_base');
    expect(o200k.count([{ content: 'hello world' }])).toBe(2 + 3 + 3);
    expect(o200k.count([{ content: 'hello world' }, { content: 'hello world' }])).toBe(2 * (2 + 3) + 3);
    expect(charsCounter.count([{ content: 'x'.repeat(400) }])).toBe(100 + 3 + 3);
  });

  it('counts a very long prompt from its first 64 kB, scaled, within a few percent of the whole count', async () => {
    const o200k = await loadTokenCounter('o200k_base');
    const text = (english + japanese + code).repeat(4_000); // about 0.9 MB
    const exact = countTokens(text) + 3 + 3;
    const n = o200k.count([{ content: text }]);
    expect(Math.abs(n - exact) / exact).toBeLessThan(0.03);
  });

  it('reserves each prompt of a mixed job (English, Japanese, code) near what the provider counts; characters / 4 cannot', async () => {
    // The provider counts with a tokenizer of another family (cl100k_base); Sluice with o200k_base,
    // calibrated by the usage answers report.
    const provider = await loadTokenCounter('cl100k_base');
    const withTokenizer = afterMixedJob(await loadTokenCounter('o200k_base'), provider);
    for (const r of withTokenizer) {
      expect(r).toBeGreaterThan(0.75);
      expect(r).toBeLessThan(1.25);
    }
    // One calibrated ratio for characters cannot fit text whose tokens per character differ 4-fold:
    // English is reserved at 2× or more, Japanese at half or less.
    const withChars = afterMixedJob(charsCounter, provider);
    expect(Math.max(...withChars)).toBeGreaterThan(2);
    expect(Math.min(...withChars)).toBeLessThan(0.6);
  });
});
