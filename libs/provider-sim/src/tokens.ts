import { fnv1a, prng } from './random.js';

/**
 * The provider's own token count for text: ceil(chars / 4). Deliberately not a real tokenizer, so
 * that a client's estimate (with its own tokenizer) differs from the provider's as it does in life.
 */
export function providerTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

const words = (
  'the of and to in is was for on that with as by at from this be are it an or which has have not ' +
  'batch prompt result model token rate limit stream kafka queue record partition offset latency ' +
  'signal value answer summary data report market price yield curve factor risk return series'
).split(' ');

/**
 * A deterministic completion for a request: the same seed, model and prompt give the same text and
 * the same number of completion tokens, between 30 % and 100 % of `maxTokens`.
 */
export function completion(
  seed: number,
  model: string,
  prompt: string,
  maxTokens: number,
): { text: string; tokens: number } {
  const random = prng(fnv1a(prompt, fnv1a(model, seed >>> 0)));
  const tokens = Math.max(1, Math.round(maxTokens * (0.3 + 0.7 * random())));
  // About four characters per token, so that chars/4 of the text gives the count back.
  const target = tokens * 4;
  let text = '';
  while (text.length < target) {
    text += (text ? ' ' : '') + words[Math.floor(random() * words.length)];
  }
  return { text: text.slice(0, target), tokens };
}
