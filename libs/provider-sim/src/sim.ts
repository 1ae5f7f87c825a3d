import {
  defaultFaults,
  defaultRateHeaders,
  defaultLatency,
  type Dialect,
  type Faults,
  type KeyConfig,
  type LatencyModel,
  type Limits,
  type SimConfig,
} from './config.js';
import {
  formatRejection,
  formatSuccess,
  type FormatContext,
  type ParsedRequest,
  type RateState,
  type Rejection,
  type Reply,
} from './dialects.js';
import { createLimiter, type Limiter } from './accounting.js';
import { DailyCounter } from './gcra.js';
import { Ledger, type LedgerRow, type Outcome } from './ledger.js';
import { normal, prng } from './random.js';
import { completion, providerTokens } from './tokens.js';

/** What the transport should do with a request. */
export type Action =
  | { type: 'reply'; reply: Reply; delayMs: number; slow?: boolean; malformed?: boolean }
  /** Accept the request and never answer. */
  | { type: 'hang' }
  /** Reset the connection after `delayMs`. */
  | { type: 'reset'; delayMs: number };

interface ModelState {
  rpm?: Limiter;
  tpm?: Limiter;
  rpd?: DailyCounter;
  flowAt: number;
  limits: Limits;
}

interface KeyState {
  config: KeyConfig;
  /** Global defaults merged with the key's own, computed once. */
  merged?: { faults: Faults; latency: LatencyModel };
  models: Map<string, ModelState>;
  /** Limits set through the control API, over everything else. */
  override?: Limits;
  inFlight: number;
}

export interface IncomingRequest {
  /** The dialect the path belongs to: chat completions paths serve openai and compatible keys. */
  route: 'chat' | 'azure' | 'gemini';
  apiKey: string | undefined;
  parsed: ParsedRequest | string;
  /** Model from the path (Azure deployment, Gemini model), for requests that failed to parse. */
  pathModel?: string;
  apiVersion?: string;
}

export interface ProviderSimOptions {
  config: SimConfig;
  /** Milliseconds, monotonic; injected by tests. @default performance.now() */
  now?: () => number;
  /** false: the ledger counts per key and keeps no row a request (see Ledger). @default true */
  ledgerRows?: boolean;
}

const noRate: RateState = Object.freeze({});

const defaultBurst: Record<Dialect, number> = { openai: 60_000, azure: 10_000, gemini: 60_000, compatible: 60_000 };

/**
 * The simulated provider: per key and model, RPM and TPM buckets (GCRA) and a daily counter,
 * limits that follow a schedule or the control API, a consumer outside our clients, latency and
 * faults. Every request is written to the ledger. Transport-free: the HTTP server asks it what to do.
 */
export class ProviderSim {
  readonly ledger: Ledger;
  private config: SimConfig;
  private keys = new Map<string, KeyState>();
  private epoch: number;
  private random: () => number;
  private readonly now: () => number;
  private seq = 0;

  constructor(options: ProviderSimOptions) {
    // Monotonic and small: bucket arithmetic on epoch milliseconds (~1.7e12) loses sub-ms precision.
    this.now = options.now ?? (() => performance.now());
    this.ledger = new Ledger(options.ledgerRows ?? true);
    this.config = options.config;
    this.epoch = this.now();
    this.random = prng(this.config.seed);
    this.loadKeys();
  }

  get currentConfig(): SimConfig {
    return this.config;
  }

  /** Milliseconds since start or the last reset. */
  elapsed(): number {
    return this.now() - this.epoch;
  }

  /** Clears the ledger, every bucket and the schedule clock; keeps the configuration. */
  reset(config: SimConfig = this.config): void {
    this.config = config;
    this.ledger.clear();
    this.epoch = this.now();
    this.random = prng(this.config.seed);
    this.seq = 0;
    this.loadKeys();
  }

  setKey(key: string, config: KeyConfig): void {
    this.config = { ...this.config, keys: { ...this.config.keys, [key]: config } };
    this.keys.set(key, { config, models: new Map(), inFlight: 0 });
  }

  deleteKey(key: string): boolean {
    const { [key]: removed, ...rest } = this.config.keys;
    this.config = { ...this.config, keys: rest };
    return this.keys.delete(key) || removed !== undefined;
  }

  /** Changes limits now, keeping what is in use; applies to every model of the key. */
  setLimits(key: string, limits: Limits): boolean {
    const state = this.keys.get(key);
    if (!state) return false;
    state.override = { ...state.override, ...limits };
    return true;
  }

  hasKey(key: string): boolean {
    return this.keys.has(key);
  }

  /** Decides the fate of one request and writes it to the ledger. */
  handle(req: IncomingRequest): Action {
    const now = this.now();
    const t = now - this.epoch;
    const state = req.apiKey === undefined ? undefined : this.keys.get(req.apiKey);
    const model = typeof req.parsed === 'string' ? (req.pathModel ?? '') : req.parsed.model;
    const dialect: Dialect = state?.config.dialect ?? (req.route === 'chat' ? 'openai' : req.route);
    const ctx: FormatContext = {
      dialect,
      model,
      rate: noRate,
      requestId: `req_sim${++this.seq}`,
      apiVersion: req.apiVersion,
      headers: state?.config.rateHeaders ?? defaultRateHeaders[dialect],
    };
    const draft: Omit<LedgerRow, 'seq'> = {
      t,
      key: req.apiKey ?? '',
      model,
      dialect,
      outcome: 'invalid',
      reason: '',
      status: 0,
      cost: 0,
      promptTokens: 0,
      completionTokens: 0,
      limitRpm: null,
      limitTpm: null,
      latencyMs: 0,
    };

    if (!state || !routeServes(req.route, state.config.dialect)) {
      const reply = formatRejection(ctx, { kind: 'unauthorized' });
      return this.record(draft, 'invalid', state ? 'wrong_dialect' : 'unknown_key', reply);
    }
    if (typeof req.parsed === 'string') {
      return this.record(
        draft,
        'invalid',
        'bad_request',
        formatRejection(ctx, { kind: 'bad_request', message: req.parsed }),
      );
    }
    const parsed = req.parsed;
    const config = state.config;
    const { faults, latency } = this.effective(state);
    const maxTokens = parsed.maxTokens ?? config.defaultMaxTokens ?? 1024;
    const promptTokens = providerTokens(parsed.promptText.length);
    const cost = dialect === 'gemini' ? promptTokens : promptTokens + maxTokens;
    const ms = this.modelState(state, parsed.model, now);
    draft.cost = cost;
    draft.promptTokens = promptTokens;
    draft.limitRpm = ms.limits.rpm ?? null;
    draft.limitTpm = ms.limits.tpm ?? null;
    const reject = (r: Rejection, reason: string, outcome: 'rejected' | 'fault' = 'rejected'): Action => {
      ctx.rate = this.rateState(ms, now);
      ctx.minusOne = this.minusOne(config);
      return this.record(draft, outcome, reason, formatRejection(ctx, r));
    };

    // Faults first: a provider that fails does not count the request against the limits.
    if (faults.outages.length > 0 && faults.outages.some((w) => t >= w.startMs && t < w.startMs + w.durationMs)) {
      return reject({ kind: 'unavailable', reason: 'outage' }, 'outage', 'fault');
    }
    if (config.dialect === 'compatible' && state.inFlight >= (config.maxInFlight ?? 64)) {
      return reject({ kind: 'unavailable', reason: 'overloaded' }, 'overloaded', 'fault');
    }
    if (config.quotaExhausted) return reject({ kind: 'quota' }, 'quota');
    const roll = this.random();
    let edge = faults.errorRate;
    if (roll < edge) return reject({ kind: 'server_error' }, 'error_500', 'fault');
    if (roll < (edge += faults.timeoutRate)) {
      this.record(draft, 'fault', 'timeout', undefined);
      return { type: 'hang' };
    }
    if (roll < (edge += faults.resetRate)) {
      this.record(draft, 'fault', 'reset', undefined);
      return { type: 'reset', delayMs: this.sampleLatency(latency, 1) / 2 };
    }
    if (ms.tpm && cost > ms.tpm.limitPerMinute) {
      return reject({ kind: 'too_large', limit: ms.tpm.limitPerMinute, requested: cost }, 'too_large');
    }

    const rpd = ms.rpd?.take(now);
    if (rpd && !rpd.allowed) {
      const limit = ms.limits.rpd ?? 0;
      return reject(
        { kind: 'rate_limited', dimension: 'rpd', limit, used: rpd.used, requested: 1, retryAfterMs: rpd.retryAfterMs },
        'rpd',
      );
    }
    const rpm = ms.rpm?.take(now, 1);
    if (ms.rpm && rpm && !rpm.allowed) {
      ms.rpd?.refund();
      const limit = ms.rpm.limitPerMinute;
      return reject(
        { kind: 'rate_limited', dimension: 'rpm', limit, used: rpm.used, requested: 1, retryAfterMs: rpm.retryAfterMs },
        'rpm',
      );
    }
    const tpm = ms.tpm?.take(now, cost);
    if (ms.tpm && tpm && !tpm.allowed) {
      ms.rpd?.refund();
      ms.rpm?.refund(now, 1);
      const limit = ms.tpm.limitPerMinute;
      return reject(
        {
          kind: 'rate_limited',
          dimension: 'tpm',
          limit,
          used: tpm.used,
          requested: cost,
          retryAfterMs: tpm.retryAfterMs,
        },
        'tpm',
      );
    }

    const done = completion(this.config.seed, parsed.model, parsed.promptText, maxTokens);
    const slow = faults.slowBodyRate > 0 && this.random() < faults.slowBodyRate;
    const malformed = !slow && faults.malformedRate > 0 && this.random() < faults.malformedRate;
    const load = config.dialect === 'compatible' ? 1 + state.inFlight / (config.maxInFlight ?? 64) : 1;
    const delayMs = this.sampleLatency(latency, done.tokens) * load;
    ctx.rate = this.rateState(ms, now);
    ctx.minusOne = this.minusOne(config);
    const reply = formatSuccess(ctx, {
      id: dialect === 'gemini' ? `sim-${this.seq}` : `chatcmpl-sim${this.seq}`,
      model: parsed.model,
      text: done.text,
      promptTokens,
      completionTokens: done.tokens,
      finishReason: done.tokens >= maxTokens ? 'length' : 'stop',
      created: Math.floor(Date.now() / 1_000),
    });
    draft.completionTokens = done.tokens;
    draft.latencyMs = Math.round(delayMs);
    this.record(draft, 'admitted', slow ? 'slow_body' : malformed ? 'malformed' : 'ok', reply);
    return { type: 'reply', reply, delayMs, slow, malformed };
  }

  /** Writes the request's ledger row and returns the immediate reply action (if any). */
  private record(draft: Omit<LedgerRow, 'seq'>, outcome: Outcome, reason: string, reply: Reply | undefined): Action {
    draft.outcome = outcome;
    draft.reason = reason;
    draft.status = reply?.status ?? 0;
    this.ledger.append(draft);
    return reply ? { type: 'reply', reply, delayMs: 0 } : { type: 'hang' };
  }

  /** The transport reports a request in flight (compatible servers slow down with load). */
  started(apiKey: string | undefined): void {
    const s = apiKey === undefined ? undefined : this.keys.get(apiKey);
    if (s) s.inFlight++;
  }

  finished(apiKey: string | undefined): void {
    const s = apiKey === undefined ? undefined : this.keys.get(apiKey);
    if (s && s.inFlight > 0) s.inFlight--;
  }

  private effective(state: KeyState): { faults: Faults; latency: LatencyModel } {
    state.merged ??= {
      faults: { ...this.config.faults, ...state.config.faults },
      latency: { ...this.config.latency, ...state.config.latency },
    };
    return state.merged;
  }

  private loadKeys(): void {
    this.keys = new Map(
      Object.entries(this.config.keys).map(([k, c]) => [k, { config: c, models: new Map(), inFlight: 0 }]),
    );
  }

  private minusOne(config: KeyConfig): boolean {
    return (
      config.dialect === 'azure' &&
      (config.minusOneHeaderRate ?? 0) > 0 &&
      this.random() < (config.minusOneHeaderRate ?? 0)
    );
  }

  /** Limits in force for a model now: model or key limits, then the schedule, then overrides. */
  private limitsFor(state: KeyState, model: string, t: number): Limits {
    let limits: Limits = { ...(state.config.models?.[model] ?? state.config.limits) };
    for (const step of state.config.schedule ?? []) if (step.atMs <= t) limits = { ...limits, ...step.limits };
    return { ...limits, ...state.override };
  }

  private modelState(state: KeyState, model: string, now: number): ModelState {
    const limits = this.limitsFor(state, model, now - this.epoch);
    const burst = limits.burstWindowMs ?? defaultBurst[state.config.dialect];
    let ms = state.models.get(model);
    if (!ms) {
      ms = { flowAt: now, limits };
      state.models.set(model, ms);
    }
    ms.limits = limits;
    const accounting = limits.accounting ?? 'bucket';
    ms.rpm = syncLimiter(ms.rpm, accounting, limits.rpm, burst, now, this.epoch);
    ms.tpm = syncLimiter(ms.tpm, accounting, limits.tpm, burst, now, this.epoch);
    if (limits.rpd === undefined) ms.rpd = undefined;
    else if (!ms.rpd) ms.rpd = new DailyCounter(limits.rpd, this.epoch);
    const share = state.config.externalShare ?? 0;
    if (share > 0) {
      if (ms.rpm) ms.rpm.consumeFlow(ms.flowAt, now, share * ms.rpm.limitPerMinute);
      if (ms.tpm) ms.tpm.consumeFlow(ms.flowAt, now, share * ms.tpm.limitPerMinute);
    }
    ms.flowAt = now;
    return ms;
  }

  private rateState(ms: ModelState, now: number): RateState {
    const s: RateState = {};
    if (ms.rpm) {
      const p = ms.rpm.peek(now);
      s.limitRequests = ms.rpm.limitPerMinute;
      s.remainingRequests = p.remaining;
      s.resetRequestsMs = p.resetMs;
      s.quotaRequests = ms.rpm.quota;
      s.windowMs = ms.rpm.windowMs;
    }
    if (ms.tpm) {
      const p = ms.tpm.peek(now);
      s.limitTokens = ms.tpm.limitPerMinute;
      s.remainingTokens = p.remaining;
      s.resetTokensMs = p.resetMs;
      s.quotaTokens = ms.tpm.quota;
      s.windowMs = ms.tpm.windowMs;
    }
    return s;
  }

  private sampleLatency(m: LatencyModel, completionTokens: number): number {
    let ms = m.baseMs + m.perTokenMs * completionTokens;
    if (ms === 0) return 0;
    // Mean-preserving log-normal noise.
    if (m.sigma > 0) ms *= Math.exp(m.sigma * normal(this.random) - (m.sigma * m.sigma) / 2);
    if (m.tailProbability > 0 && this.random() < m.tailProbability) ms *= m.tailMultiplier;
    return Math.max(0, ms);
  }
}

function routeServes(route: IncomingRequest['route'], dialect: Dialect): boolean {
  return route === 'chat' ? dialect === 'openai' || dialect === 'compatible' : route === dialect;
}

function syncLimiter(
  limiter: Limiter | undefined,
  accounting: Limiter['accounting'],
  limit: number | undefined,
  windowMs: number,
  now: number,
  epoch: number,
): Limiter | undefined {
  if (limit === undefined) return undefined;
  if (!limiter || limiter.accounting !== accounting) return createLimiter(accounting, limit, windowMs, epoch);
  if (limiter.limitPerMinute !== limit || limiter.windowMs !== windowMs) limiter.setLimit(now, limit, windowMs);
  return limiter;
}

export { defaultFaults, defaultLatency };
