export { stackSettings, parseEnvFile, connectionEnv, type StackSettings } from './stack-settings.js';
export { uniqueName } from './names.js';
export { waitFor, type WaitForOptions } from './wait-for.js';
export { freePort } from './ports.js';
export { FaultProxy, proxyAddresses, type ProxyMode } from './fault-proxy.js';
export { helpIfAsked } from './help.js';
export { badRowCorpus, corpusUpload, type CorpusLine } from './bad-rows.js';
