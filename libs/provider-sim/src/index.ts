export { startProviderSim, type ProviderSimServer, type ProviderSimServerOptions } from './server.js';
export { ProviderSim, type Action, type IncomingRequest } from './sim.js';
export { Gcra, DailyCounter, type GcraDecision, type GcraOptions } from './gcra.js';
export { Ledger, type LedgerRow, type KeyModelStats, type SeriesPoint } from './ledger.js';
export {
  parseSimConfig,
  parseKeyConfig,
  parseLimits,
  SimConfigError,
  type SimConfig,
  type KeyConfig,
  type Limits,
  type Faults,
  type LatencyModel,
  type Dialect,
  type RateHeaderStyle,
} from './config.js';
export { createLimiter, accountings, type Accounting, type Limiter } from './accounting.js';
export { goDuration } from './dialects.js';
export { providerTokens, completion } from './tokens.js';
