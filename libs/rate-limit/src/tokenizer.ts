/**
 * Counts a prompt's tokens before it is sent, for the reservation a call makes on a tokens-per-minute
 * bucket. The encodings ship inside the gpt-tokenizer package (nothing is downloaded); each is about
 * 120 MB of memory once loaded, so it is loaded once per process, and only when asked for. The
 * count is an estimate either way: the learner calibrates it against the usage the provider reports
 * (another model family's tokenizer, Gemini's, counts differently, and the calibration learns by how
 * much).
 */
export type TokenizerName = 'o200k_base' | 'cl100k_base' | 'chars';

export const tokenizerNames: readonly TokenizerName[] = ['o200k_base', 'cl100k_base', 'chars'];

export interface TokenCounter {
  readonly name: TokenizerName;
  /** Tokens of a chat prompt: each message's content, plus the few tokens that frame a message. */
  count(messages: ReadonlyArray<{ content: string }>): number;
}

/** Tokens that frame each message (role, separators) and prime the reply, as OpenAI's chat format counts them. */
const perMessage = 3;
const perReply = 3;
/**
 * Longer texts are counted on their first this-many characters and scaled: the estimate stays
 * within a few percent, and a 1 MB prompt costs no more event-loop time than 64 kB (about 4 ms).
 */
const sampleChars = 65_536;

/** ceil(chars / 4): the rule of thumb, with no tokenizer loaded. */
export const charsCounter: TokenCounter = {
  name: 'chars',
  count: (messages) => messages.reduce((n, m) => n + Math.ceil(m.content.length / 4) + perMessage, perReply),
};

/** Loads the named encoding (`chars`: none). */
export async function loadTokenCounter(name: TokenizerName): Promise<TokenCounter> {
  if (name === 'chars') return charsCounter;
  const { countTokens } =
    name === 'o200k_base'
      ? await import('gpt-tokenizer/encoding/o200k_base')
      : await import('gpt-tokenizer/encoding/cl100k_base');
  const tokensOf = (text: string): number => {
    if (text.length <= sampleChars) return countTokens(text);
    return Math.ceil((countTokens(text.slice(0, sampleChars)) * text.length) / sampleChars);
  };
  return {
    name,
    count: (messages) => messages.reduce((n, m) => n + tokensOf(m.content) + perMessage, perReply),
  };
}
