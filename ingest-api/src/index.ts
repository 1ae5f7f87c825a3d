export { buildApp, type AppOptions } from './app.js';
export { loadConfig, hashApiKey, ConfigError, type IngestConfig } from './config.js';
export { JobService } from './services/jobs.js';
export { openResultsAccess, type ResultsAccess } from './routes/v1/results.js';
