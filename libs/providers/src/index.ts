export * from './types.js';
export { limitFromMessage, parseGoDuration, readRateHeaders, retryAfterMs } from './headers.js';
export {
  classifyOpenAIError,
  createAzureAdapter,
  createCompatibleAdapter,
  createOpenAIAdapter,
  type AzureAdapterOptions,
  type CompatibleAdapterOptions,
  type OpenAIAdapterOptions,
} from './openai-family.js';
export { classifyGeminiError, createGeminiAdapter, type GeminiAdapterOptions } from './gemini.js';
export { adapterFor, type ProviderKind } from './adapter-for.js';
