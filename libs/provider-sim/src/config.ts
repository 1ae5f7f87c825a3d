/** The API dialect a key speaks: which paths, headers and error bodies it answers with. */
import { accountings, type Accounting } from './accounting.js';

export type Dialect = 'openai' | 'azure' | 'gemini' | 'compatible';
export const dialects: readonly Dialect[] = ['openai', 'azure', 'gemini', 'compatible'];

export interface Limits {
  /** Requests per minute; absent: unlimited. */
  rpm?: number;
  /** Tokens per minute (provider cost, see README); absent: unlimited. */
  tpm?: number;
  /** Requests per day; absent: unlimited. */
  rpd?: number;
  /**
   * The window a limit is counted over: how much rate a bucket holds, or a window's length.
   * @default 60000 (openai, gemini, compatible), 10000 (azure)
   */
  burstWindowMs?: number;
  /** How the limits are counted (see accounting.ts). @default "bucket" */
  accounting?: Accounting;
}

/**
 * Which rate headers answers carry: OpenAI's six `x-ratelimit-*` (limit per minute, remaining,
 * reset), Azure's remaining ones only, the IETF draft's `RateLimit-Policy` and `RateLimit`
 * fields, or none (a 429 is the only signal).
 */
export type RateHeaderStyle = 'openai' | 'remaining' | 'ietf' | 'none';
export const rateHeaderStyles: readonly RateHeaderStyle[] = ['openai', 'remaining', 'ietf', 'none'];
export const defaultRateHeaders: Record<Dialect, RateHeaderStyle> = {
  openai: 'openai',
  azure: 'remaining',
  gemini: 'none',
  compatible: 'none',
};

export interface LatencyModel {
  /** @default 200 */
  baseMs: number;
  /** Per completion token. @default 2 */
  perTokenMs: number;
  /** Log-normal noise: sigma of the underlying normal. 0 = no noise. @default 0.25 */
  sigma: number;
  /** Probability that a request falls in the heavy tail. @default 0 */
  tailProbability: number;
  /** Latency multiplier in the tail. @default 10 */
  tailMultiplier: number;
}

export interface Faults {
  /** Probability of a 500. @default 0 */
  errorRate: number;
  /** Probability of accepting the request and never answering. @default 0 */
  timeoutRate: number;
  /** Probability of resetting the connection. @default 0 */
  resetRate: number;
  /** Probability of a body sent slowly, a few bytes at a time. @default 0 */
  slowBodyRate: number;
  /** Probability of a 200 whose body is not valid JSON. @default 0 */
  malformedRate: number;
  /** Windows (ms since start or reset) in which every request gets a 503. @default [] */
  outages: Array<{ startMs: number; durationMs: number }>;
}

export interface ScheduleStep {
  /** Milliseconds after start (or the last reset) at which `limits` take effect. */
  atMs: number;
  limits: Limits;
}

export interface KeyConfig {
  dialect: Dialect;
  /** Limits for every model of the key, unless `models` names it. */
  limits: Limits;
  models?: Record<string, Limits>;
  /** Limit changes over time, for every model of the key. */
  schedule?: ScheduleStep[];
  /** Share (0 to 0.95) of each limit used by a consumer outside the simulator's clients. */
  externalShare?: number;
  /** Answer every request with insufficient_quota (OpenAI) or the dialect's equivalent. */
  quotaExhausted?: boolean;
  latency?: Partial<LatencyModel>;
  faults?: Partial<Faults>;
  /** compatible: requests in flight above which it answers 503. @default 64 */
  maxInFlight?: number;
  /** Completion budget assumed when a request gives no max_tokens. @default 1024 */
  defaultMaxTokens?: number;
  /** azure: probability that a rate header reads -1, as Azure sometimes sends. @default 0 */
  minusOneHeaderRate?: number;
  /** Which rate headers answers carry. @default by dialect: openai, remaining (azure), none */
  rateHeaders?: RateHeaderStyle;
}

export interface SimConfig {
  /** Seed of completions and of random faults and latency. @default 1 */
  seed: number;
  keys: Record<string, KeyConfig>;
  /** Defaults for keys that set no latency model. */
  latency: LatencyModel;
  /** Defaults for keys that set no faults. */
  faults: Faults;
}

export const defaultLatency: LatencyModel = Object.freeze({
  baseMs: 200,
  perTokenMs: 2,
  sigma: 0.25,
  tailProbability: 0,
  tailMultiplier: 10,
});

export const defaultFaults: Faults = Object.freeze({
  errorRate: 0,
  timeoutRate: 0,
  resetRate: 0,
  slowBodyRate: 0,
  malformedRate: 0,
  outages: [],
});

/** Bad configuration: says which field, what is wrong and what is accepted. */
export class SimConfigError extends Error {
  readonly code = 'SIM_CONFIG_INVALID';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'SimConfigError';
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function object(v: unknown, path: string): Obj {
  if (!isObj(v)) throw new SimConfigError(path, `must be an object, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `the string "${v}"` : `${typeof v} ${String(v)}`;
}

function noUnknown(o: Obj, path: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k))
      throw new SimConfigError(`${path}.${k}`, `unknown field; known fields: ${known.join(', ')}`);
  }
}

function num(v: unknown, path: string, { min = 0, max = Number.MAX_SAFE_INTEGER, exclusiveMin = false } = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new SimConfigError(path, `must be a number, got ${describe(v)}`);
  if (exclusiveMin ? v <= min : v < min) {
    throw new SimConfigError(path, `must be ${exclusiveMin ? 'greater than' : 'at least'} ${min}, got ${v}`);
  }
  if (v > max) throw new SimConfigError(path, `must be at most ${max}, got ${v}`);
  return v;
}

function optNum(o: Obj, key: string, path: string, opts?: Parameters<typeof num>[2]): number | undefined {
  return o[key] === undefined ? undefined : num(o[key], `${path}.${key}`, opts);
}

const probability = { min: 0, max: 1 };

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T))
    throw new SimConfigError(path, `must be one of ${allowed.join(', ')}, got ${describe(v)}`);
  return v as T;
}

export function parseLimits(v: unknown, path: string): Limits {
  const o = object(v, path);
  noUnknown(o, path, ['rpm', 'tpm', 'rpd', 'burstWindowMs', 'accounting']);
  const limits: Limits = {};
  const rpm = optNum(o, 'rpm', path, { min: 0, exclusiveMin: true });
  const tpm = optNum(o, 'tpm', path, { min: 0, exclusiveMin: true });
  const rpd = optNum(o, 'rpd', path, { min: 0, exclusiveMin: true });
  const burstWindowMs = optNum(o, 'burstWindowMs', path, { min: 1, max: 3_600_000 });
  if (rpm !== undefined) limits.rpm = rpm;
  if (tpm !== undefined) limits.tpm = tpm;
  if (rpd !== undefined) limits.rpd = rpd;
  if (burstWindowMs !== undefined) limits.burstWindowMs = burstWindowMs;
  if (o['accounting'] !== undefined) limits.accounting = oneOf(o['accounting'], `${path}.accounting`, accountings);
  return limits;
}

export function parseLatency(v: unknown, path: string): Partial<LatencyModel> {
  const o = object(v, path);
  noUnknown(o, path, Object.keys(defaultLatency));
  const out: Partial<LatencyModel> = {};
  for (const key of Object.keys(defaultLatency) as Array<keyof LatencyModel>) {
    const opts = key === 'tailProbability' ? probability : key === 'tailMultiplier' ? { min: 1 } : undefined;
    const value = optNum(o, key, path, opts);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

export function parseFaults(v: unknown, path: string): Partial<Faults> {
  const o = object(v, path);
  noUnknown(o, path, Object.keys(defaultFaults));
  const out: Partial<Faults> = {};
  for (const key of ['errorRate', 'timeoutRate', 'resetRate', 'slowBodyRate', 'malformedRate'] as const) {
    const value = optNum(o, key, path, probability);
    if (value !== undefined) out[key] = value;
  }
  if (o['outages'] !== undefined) {
    if (!Array.isArray(o['outages']))
      throw new SimConfigError(`${path}.outages`, 'must be an array of {startMs, durationMs}');
    out.outages = o['outages'].map((w, i) => {
      const p = `${path}.outages[${i}]`;
      const wo = object(w, p);
      noUnknown(wo, p, ['startMs', 'durationMs']);
      return { startMs: num(wo['startMs'], `${p}.startMs`), durationMs: num(wo['durationMs'], `${p}.durationMs`) };
    });
  }
  return out;
}

const keyFields = [
  'dialect',
  'limits',
  'models',
  'schedule',
  'externalShare',
  'quotaExhausted',
  'latency',
  'faults',
  'maxInFlight',
  'defaultMaxTokens',
  'minusOneHeaderRate',
  'rateHeaders',
] as const;

export function parseKeyConfig(v: unknown, path: string): KeyConfig {
  const o = object(v, path);
  noUnknown(o, path, keyFields);
  const dialect = o['dialect'] ?? 'openai';
  if (typeof dialect !== 'string' || !dialects.includes(dialect as Dialect)) {
    throw new SimConfigError(`${path}.dialect`, `must be one of ${dialects.join(', ')}, got ${describe(dialect)}`);
  }
  const key: KeyConfig = { dialect: dialect as Dialect, limits: parseLimits(o['limits'] ?? {}, `${path}.limits`) };
  if (o['models'] !== undefined) {
    const models = object(o['models'], `${path}.models`);
    key.models = Object.fromEntries(
      Object.entries(models).map(([name, limits]) => [name, parseLimits(limits, `${path}.models.${name}`)]),
    );
  }
  if (o['schedule'] !== undefined) {
    if (!Array.isArray(o['schedule']))
      throw new SimConfigError(`${path}.schedule`, 'must be an array of {atMs, limits}');
    key.schedule = o['schedule'].map((s, i) => {
      const p = `${path}.schedule[${i}]`;
      const so = object(s, p);
      noUnknown(so, p, ['atMs', 'limits']);
      return { atMs: num(so['atMs'], `${p}.atMs`), limits: parseLimits(so['limits'], `${p}.limits`) };
    });
    key.schedule.sort((a, b) => a.atMs - b.atMs);
  }
  const externalShare = optNum(o, 'externalShare', path, { min: 0, max: 0.95 });
  if (externalShare !== undefined) key.externalShare = externalShare;
  if (o['quotaExhausted'] !== undefined) {
    if (typeof o['quotaExhausted'] !== 'boolean') {
      throw new SimConfigError(`${path}.quotaExhausted`, `must be true or false, got ${describe(o['quotaExhausted'])}`);
    }
    key.quotaExhausted = o['quotaExhausted'];
  }
  if (o['latency'] !== undefined) key.latency = parseLatency(o['latency'], `${path}.latency`);
  if (o['faults'] !== undefined) key.faults = parseFaults(o['faults'], `${path}.faults`);
  const maxInFlight = optNum(o, 'maxInFlight', path, { min: 1 });
  if (maxInFlight !== undefined) key.maxInFlight = maxInFlight;
  const defaultMaxTokens = optNum(o, 'defaultMaxTokens', path, { min: 1 });
  if (defaultMaxTokens !== undefined) key.defaultMaxTokens = defaultMaxTokens;
  const minusOne = optNum(o, 'minusOneHeaderRate', path, probability);
  if (minusOne !== undefined) key.minusOneHeaderRate = minusOne;
  if (o['rateHeaders'] !== undefined)
    key.rateHeaders = oneOf(o['rateHeaders'], `${path}.rateHeaders`, rateHeaderStyles);
  return key;
}

export function parseSimConfig(v: unknown, path = 'config'): SimConfig {
  const o = object(v, path);
  noUnknown(o, path, ['seed', 'keys', 'latency', 'faults']);
  const keys = object(o['keys'] ?? {}, `${path}.keys`);
  return {
    seed: o['seed'] === undefined ? 1 : num(o['seed'], `${path}.seed`),
    keys: Object.fromEntries(Object.entries(keys).map(([k, c]) => [k, parseKeyConfig(c, `${path}.keys.${k}`)])),
    latency: {
      ...defaultLatency,
      ...(o['latency'] === undefined ? {} : parseLatency(o['latency'], `${path}.latency`)),
    },
    faults: { ...defaultFaults, ...(o['faults'] === undefined ? {} : parseFaults(o['faults'], `${path}.faults`)) },
  };
}
