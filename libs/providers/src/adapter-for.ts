import { createGeminiAdapter } from './gemini.js';
import { createAzureAdapter, createCompatibleAdapter, createOpenAIAdapter } from './openai-family.js';
import type { ProviderAdapter } from './types.js';

/** The kinds of provider Sluice calls: their SDKs and the way each counts its limits. */
export type ProviderKind = 'openai' | 'azure' | 'gemini' | 'compatible';

/** The adapter of a provider kind, for one API key (and the endpoint, where the kind needs one). */
export function adapterFor(c: {
  provider: ProviderKind;
  apiKey: string;
  baseUrl: string | undefined;
}): ProviderAdapter {
  switch (c.provider) {
    case 'openai':
      return createOpenAIAdapter({ apiKey: c.apiKey, baseURL: c.baseUrl });
    case 'azure':
      if (!c.baseUrl) throw new Error('SLUICE_PROVIDER_BASE_URL must name the Azure OpenAI endpoint');
      return createAzureAdapter({ endpoint: c.baseUrl, apiKey: c.apiKey });
    case 'gemini':
      return createGeminiAdapter({ apiKey: c.apiKey, baseUrl: c.baseUrl });
    case 'compatible':
      if (!c.baseUrl) throw new Error("SLUICE_PROVIDER_BASE_URL must name the server's /v1 URL");
      return createCompatibleAdapter({ apiKey: c.apiKey, baseURL: c.baseUrl });
  }
}
