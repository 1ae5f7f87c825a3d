import type { BucketLimits, LearnedLimits } from './types.js';
import { RefillEstimator } from './refill.js';
import { ResetWatch } from './resets.js';

/** Limits a provider stated: in x-ratelimit-limit-* headers, or in a 429's body. Per minute. */
export interface StatedLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

/**
 * What remains of each limit, from an answer's headers (Azure sends nothing else), and in how
 * many milliseconds each resets (OpenAI's reset-*, the IETF `t`).
 */
export interface RemainingLimits {
  requests?: number;
  tokens?: number;
  resetRequestsMs?: number;
  resetTokensMs?: number;
}

/**
 * What an answer said remains of a limit until its reset: a budget, not a rate. `count` is what
 * had been sent on the key when the call it answers went out, that call included.
 */
interface Budget {
  count: number;
  remaining: number;
  until: number;
  /** When the call it answers was sent. */
  at: number;
  /** When the answer came. */
  seen: number;
  /** The provider stated the reset (a header); else it was found from what remains. */
  stated: boolean;
}

/** A call's place among those this process sent: sent at `at`, `requests` and `tokens` so far, it included. */
export interface SendStamp {
  at: number;
  requests: number;
  tokens: number;
  cost: number;
}

export interface LimitLearnerOptions {
  /** What the operator configured: a cap, never exceeded. */
  configured: BucketLimits;
  /**
   * Fraction of a stated token limit to pace at: tokens are estimated before the call, and the
   * margin takes the estimate's error. @default 0.995
   */
  pace?: number;
  /**
   * Fraction of a stated request limit to pace at: requests are counted exactly, one a call, so
   * none need be kept back. @default 1
   */
  requestPace?: number;
  /**
   * Fraction of a refill rate measured from remaining-only headers to pace at when the bucket is
   * `levelTarget` full; a fuller bucket raises it, an emptier one lowers it. @default 1
   */
  measuredPace?: number;
  /** Request rate to start probing at when nothing is known. @default 60 per minute */
  startRpm?: number;
  /** Growth per clean period while probing after the first 429. @default 1.1 */
  growth?: number;
  /** A clean period: no 429 and the rate in use. @default 10000 */
  cleanMs?: number;
  /** 429s this soon after a decrease belong to the same episode (calls sent before it). @default 2000 */
  episodeMs?: number;
  now?: () => number;
}

const statedBurstMs = 250;
/** Seconds of admissions kept: "the rate admitted just before" a 429 (admittedPerMinute). */
const recentSeconds = 10;
/** Remaining-only answers: what is left above the margin is spent over this. */
const controlMs = 250;
/** Remaining-only answers: the share of the most seen left kept as a margin, beside two calls. */
const controlMargin = 0.02;
/** Weight of each report in the prompt tokens' calibration (a moving average over ~20 calls). */
const promptCalibration = 0.05;
/** How much a measured pace moves with the bucket's level (see limits()). */
const levelGain = 0.5;
/**
 * The share of its fullest a measured bucket is kept at: room for a burst or an estimate a little
 * high, and little to save up again after slow start spent it.
 */
const levelTarget = 0.3;

export type LearnerMode = 'stated' | 'measured' | 'configured' | 'slow-start' | 'probing';

/**
 * What one process believes a (provider, model, key) allows, and so what it paces at.
 *
 * - The provider's word first: limits stated in headers or 429 bodies, paced at `pace` of them.
 *   A 429 even so (another client shares the key, estimates run high) lowers a share of them to
 *   0.95 of what was admitted just before, once per episode, and clean periods raise it again.
 *   Headers follow every change of a limit; a limit only 429 bodies stated may have been raised
 *   since, so after a clean `cleanMs` at it the learner probes above it in growing steps (1.1,
 *   1.2, 1.4, 1.8, 2.6 ×; the first after `cleanMs`, each next after half of it) until a 429's
 *   body states the limit again; a probe that met the same limit makes the next one wait twice
 *   as long (at most 16 periods).
 * - Else, where answers say only what remains (Azure), that is a budget: held near a margin of
 *   two calls and 2 % of the most seen, paced at the room freed meanwhile (the slope of remaining
 *   plus sent) plus what is left above the margin spent over a quarter second; no estimate of a
 *   rate holds it down (under a window, what was measured as a refill was the lane's own echo).
 *   A fixed window found from the jumps of what remains, or from 429s' waits, makes it a budget
 *   until a reset, as OpenAI's headers would. Slow start is held to the same budget.
 * - Else the configured limits, with the burst of stated ones (a quarter of a second of rate).
 * - Else probing: slow start from `startRpm`, doubling each clean half second while calls go out
 *   at it (counted as they are sent: answers come a latency later), until the first 429; then
 *   0.95 of the rate admitted just before it, and `growth` per clean period. 5xx and timeouts are
 *   not the limit's doing and change nothing.
 */
export class LimitLearner {
  private readonly pace: number;
  private readonly requestPace: number;
  private readonly measuredPace: number;
  private readonly refill = { requests: new RefillEstimator(), tokens: new RefillEstimator() };
  /**
   * The room the provider frees meanwhile, for budgets: the same fit over the last 1.5 s, so that
   * a sliding counter's new window (its previous one's weight falling at a new rate) shows within
   * a second, not five.
   */
  private readonly freed = {
    requests: new RefillEstimator(1_500, 500, 8, true),
    tokens: new RefillEstimator(1_500, 500, 8, true),
  };
  /** The newest budget each answer stated (remaining until reset), and the newest send count. */
  private readonly budget: { requests?: Budget; tokens?: Budget } = {};
  /**
   * How long after a budget's reset, as reckoned here, the provider's may still be to come. The
   * reset is reckoned from the send of the call an answer is for; the provider counted the call
   * when it arrived, a little later. A call sent just after the reckoned reset can land just before
   * the real one, in a window already spent (one 429 a window under a fixed 1 s window). Starts at
   * 5 ms; each such 429 (its wait a fraction of a second, in the first moments after a reckoned
   * reset) doubles it, up to 50 ms.
   */
  private edgeMs = 5;
  /** A stated window that stays put has turned, and no fit of what it frees has formed since. */
  private readonly turned = { requests: false, tokens: false };
  /**
   * Per minute, what other clients took of the window before a turn: its count (the most seen
   * left, less what was left at the turn) over its length, less this lane's own admissions.
   */
  private readonly othersAtTurn = { requests: 0, tokens: 0 };
  /**
   * A budget's reset as seen at least 100 ms before the newest, and whether resets move on with
   * time (a sliding log's: its oldest call leaves) or stay put (a fixed window's end).
   */
  private readonly resetSeen: { requests?: { at: number; until: number }; tokens?: { at: number; until: number } } = {};
  private readonly resetMoves = { requests: false, tokens: false };
  /** Whether two resets 100 ms apart have told whether they move. */
  private readonly resetKnown = { requests: false, tokens: false };
  /** What remained at most when a 429's body stated the limit, or when raisedBeyond() raised it. */
  private readonly raiseBase = { requests: 0, tokens: 0 };
  private newestSent = { requests: 0, tokens: 0 };
  /**
   * The room freed between the two newest answers, per minute: where calls are too sparse for a
   * fit (a pace held low by a budget), two answers are the evidence that room comes back.
   */
  private readonly pair: Record<'requests' | 'tokens', { at: number; sum: number; perMinute?: number } | undefined> = {
    requests: undefined,
    tokens: undefined,
  };
  private fullest = { requests: 0, tokens: 0 };
  /** Whether remaining-only answers have shown half of the most seen spent: the budget is the measure. */
  private budgetBound = false;
  /** When the first answer said what remains. */
  private firstRemainingAt = Infinity;
  /** The send count of the newest call whose answer said what remains. */
  private readonly lastStamp: { requests?: number; tokens?: number } = {};
  /** Where answers state no reset: the fixed window found from what remains, if any. */
  private readonly resets = { requests: new ResetWatch(), tokens: new ResetWatch() };
  /** Of the measured rates; reset to measuredPace by each new measure. */
  private measuredShare: number;
  private measuredSince = -Infinity;
  /** Prompt tokens a character / 4 costs, as the provider reports them. */
  private promptRatio = 1;
  private promptReports = 0;
  private sentRequests = 0;
  private sentTokens = 0;
  private readonly growth: number;
  private readonly cleanMs: number;
  private readonly episodeMs: number;
  private readonly now: () => number;
  private stated: StatedLimits = {};
  /** Probing: requests per minute. */
  private probeRpm: number;
  private slowStart = true;
  /** Of the stated limits, when a 429 said they are not all ours. */
  private share: number;
  private lastDecreaseAt = -Infinity;
  /** The newest 429, and the wait it asked for. */
  private lastRefusal?: { at: number; retryAfterMs: number };
  /** Whether an answer's headers stated the limits (else only 429 bodies have). */
  private statedByHeaders = false;
  /** Above limits only 429 bodies stated: 1 while paced at them, more while probing. */
  private above = 1;
  private statedSince = -Infinity;
  private periodStart: number;
  private periodAdmitted = 0;
  private periodTokens = 0;
  /** Calls sent this period: slow start's measure of use (admissions lag a latency behind). */
  private periodSent = 0;
  /** Admissions in the last `recentSeconds`: "the rate admitted just before". */
  private readonly recent = new AdmittedLog(recentSeconds * 1_000);
  decreases = 0;

  constructor(private readonly o: LimitLearnerOptions) {
    this.pace = o.pace ?? 0.995;
    this.requestPace = o.requestPace ?? 1;
    this.measuredPace = o.measuredPace ?? 1;
    this.measuredShare = this.measuredPace;
    this.growth = o.growth ?? 1.1;
    this.cleanMs = o.cleanMs ?? 10_000;
    this.episodeMs = o.episodeMs ?? 2_000;
    this.now = o.now ?? Date.now;
    this.probeRpm = o.startRpm ?? 60;
    this.share = this.pace;
    this.periodStart = this.now();
  }

  get mode(): LearnerMode {
    if (this.stated.requestsPerMinute !== undefined || this.stated.tokensPerMinute !== undefined) return 'stated';
    if (
      this.budgetBound ||
      this.refill.requests.perMinute !== undefined ||
      this.refill.tokens.perMinute !== undefined ||
      this.resets.requests.windowMs !== undefined ||
      this.resets.tokens.windowMs !== undefined
    )
      return 'measured';
    const c = this.o.configured;
    if (c.requestsPerMinute !== undefined || c.tokensPerMinute !== undefined) return 'configured';
    return this.slowStart ? 'slow-start' : 'probing';
  }

  /** What to pace at now. */
  limits(): BucketLimits {
    const c = this.o.configured;
    const cap = (v: number | undefined, limit: number | undefined) =>
      v === undefined ? limit : limit === undefined ? Math.floor(v) : Math.min(limit, Math.floor(v));
    // At a known limit (stated, measured, configured), a burst of a second's rate meets the
    // provider's bucket when that is low or, at the start, full (calls arrive bunched; 2-3 429s in
    // the first second of a configured limit): a quarter of a second's worth at most.
    const nearLimitBurstMs = Math.min(c.burstWindowMs ?? 1_000, statedBurstMs);
    switch (this.mode) {
      case 'stated': {
        const s = this.stated;
        // The share runs up to `pace`; requests are paced at `requestPace` where tokens are at it.
        const f = this.share * this.above;
        const t = this.now();
        const paced = (stated: number | undefined, dim: 'requests' | 'tokens', k: number) =>
          stated === undefined ? undefined : Math.max(1, this.budgetPace(dim, stated * f * k, t));
        return {
          ...c,
          requestsPerMinute: cap(
            paced(s.requestsPerMinute, 'requests', this.requestPace / this.pace),
            c.requestsPerMinute,
          ),
          tokensPerMinute: cap(paced(s.tokensPerMinute, 'tokens', 1), c.tokensPerMinute),
          burstWindowMs: nearLimitBurstMs,
        };
      }
      case 'measured': {
        // What remains is a budget, held near a margin (budgetControl): the room freed meanwhile
        // plus what is left above the margin, whatever the accounting. Under a fixed window found
        // from what remains, its budget until the reset sets the pace: what is left spread over
        // the time to the window's end.
        const t = this.now();
        const pace = (dim: 'requests' | 'tokens') =>
          this.resets[dim].perMinute !== undefined && this.budget[dim]
            ? Math.max(1, this.budgetPace(dim, this.resets[dim].perMinute!, t))
            : this.budgetControl(dim, this.measuredPaceOf(this.refill[dim]));
        return {
          ...c,
          requestsPerMinute: cap(pace('requests'), c.requestsPerMinute),
          tokensPerMinute: cap(pace('tokens'), c.tokensPerMinute),
          burstWindowMs: nearLimitBurstMs,
        };
      }
      case 'configured':
        return { ...c, burstWindowMs: nearLimitBurstMs };
      default: {
        // Slow start where answers say what remains: no faster than that budget allows, so that
        // the first 429 is not the only word on the limit.
        const budget = this.budgetControl('requests', undefined);
        return {
          ...c,
          requestsPerMinute: Math.max(1, Math.floor(Math.min(this.probeRpm, budget ?? Infinity))),
          ...(this.leftOf('tokens') !== undefined
            ? { tokensPerMinute: cap(this.budgetControl('tokens', undefined), c.tokensPerMinute) }
            : {}),
        };
      }
    }
  }

  /**
   * Tokens to reserve for a call: its prompt's tokens as counted here (a tokenizer, or characters /
   * 4), times what the provider's reported usage says a counted token costs (calibrated), plus
   * `maxTokens`.
   */
  estimate(counted: number, maxTokens: number): number {
    return Math.ceil(counted * this.promptRatio) + maxTokens;
  }

  /**
   * The provider reported `promptTokens` for a prompt counted as `counted` tokens here: calibrates
   * estimate(). A moving average of the ratio (within ¼ and 4), so that text the count gets wrong
   * (another model family's tokenizer; without one, code and CJK at characters / 4) is reserved at
   * what it costs.
   */
  reported(counted: number, promptTokens: number): void {
    if (!(counted > 0) || !(promptTokens > 0)) return;
    const ratio = Math.min(4, Math.max(0.25, promptTokens / counted));
    // The plain mean of the first reports (the first answer already corrects a tokenizer of
    // another family), then the moving average.
    this.promptReports++;
    this.promptRatio += Math.max(promptCalibration, 1 / this.promptReports) * (ratio - this.promptRatio);
  }

  /**
   * Calls a second the pace allows, for calls of `tokensPerCall` on average; undefined when no
   * dimension is limited.
   */
  callsPerSecond(tokensPerCall: number): number | undefined {
    const l = this.limits();
    const rates = [
      l.requestsPerMinute !== undefined ? l.requestsPerMinute / 60 : undefined,
      l.tokensPerMinute !== undefined ? l.tokensPerMinute / 60 / Math.max(1, tokensPerCall) : undefined,
    ].filter((r): r is number => r !== undefined);
    return rates.length === 0 ? undefined : Math.min(...rates);
  }

  /**
   * Under a stated ceiling (per minute), the pace the newest budget allows: what remains of it,
   * less what was sent since the call it answers, spread over the time left until its reset, plus
   * what the provider was seen to free meanwhile (a bucket refills, a sliding window's oldest
   * calls leave it; a fixed window frees nothing). The ceiling while the budget lasts at it, and
   * once its reset has passed: a budget says nothing beyond its reset, so no measure holds the
   * pace down for longer than one window.
   */
  private budgetPace(dim: 'requests' | 'tokens', ceiling: number, t: number): number {
    const b = this.budget[dim];
    if (!b) {
      // Remaining without a reset (Azure beside a limit a 429's body stated): the budget held
      // near its margin, under the ceiling.
      const m = this.budgetControl(dim, this.measuredPaceOf(this.refill[dim]));
      return m === undefined ? ceiling : Math.min(ceiling, m);
    }
    // Signed: under a window that frees nothing before its reset, another client's use shows as
    // a falling slope, and the budget is left to it rather than met with a 429 at the end.
    const freed = this.freedOf(dim, b);
    const perCall = dim === 'requests' ? 1 : this.sentTokens / Math.max(1, this.sentRequests);
    if (
      freed > 0 &&
      this.resetMoves[dim] &&
      b.remaining >= perCall &&
      b.until - b.at <= (2 * perCall * 60_000) / ceiling &&
      t - b.seen < 1_000
    ) {
      // Room comes back as fast as it is used, and the next of it within two calls at the ceiling:
      // a sliding log at its limit (its reset is when its oldest call leaves). Spent by each reset,
      // the budget met every freed unit at once and a 429 whenever a call came a millisecond early
      // (one a window). What is left now (less what was sent since, plus what was freed) is kept
      // near a margin of two calls and 1 % of the most seen left: the pace falls by up to a tenth
      // as what is left falls through it. Not more: following what is freed exactly (slow start's
      // first seconds, leaving the window a window later) stopped the lane, and the hole it left
      // came back window after window; a 429 when it comes is waited out.
      const now = b.remaining - (this.newestSent[dim] - b.count) + (freed * (t - b.at)) / 60_000;
      const margin = 2 * perCall + 0.01 * this.fullest[dim];
      return ceiling * (1 - 0.1 * Math.min(1, Math.max(0, (margin - now) / margin)));
    }
    if (t >= this.ends(b)) return ceiling;
    // The first moments of a window that turned: what remains at the turn plus what the window
    // frees over its length is its quota whatever the accounting (a fixed window is full again
    // and frees nothing; a sliding counter frees its previous window's count, which is what is
    // not left), so the ceiling less what other clients took of the window before, until a fit
    // says what is freed.
    if (this.turned[dim]) {
      if (this.freed[dim].slopePerMinute === undefined)
        return Math.max(60 * perCall, Math.min(ceiling, ceiling / Math.max(0.05, this.share) - this.othersAtTurn[dim]));
      this.turned[dim] = false;
    }
    // What is left now: less what this lane sent since the call the budget answers, and less what
    // other clients were seen taking (a falling slope) since it was counted.
    const left = Math.max(0, this.leftNow(dim, b, freed, t));
    const span = Math.max(1, b.until - t);
    // A little kept back (a quarter second of the ceiling, at most 2 % of the time left): where
    // the provider frees room exactly as fast as it is used (a sliding window at its limit), a
    // pace that meets every freed unit at once meets a 429 on each one that comes late.
    // Another client's use (a falling slope) takes room in the time of one of this lane's calls
    // at the ceiling too (two such times kept back a tenth of a 1 s window shared half).
    const reserve = (ceiling / 60_000) * Math.min(250, 0.02 * span) + Math.max(0, -freed) / Math.max(1, ceiling);
    const paced = (Math.max(0, left - reserve) / span) * 60_000 + freed;
    // While a call's worth is left and the reset is more than 2 s off, at least one call a second
    // goes: its answer is the evidence that room came back (a sliding counter frees its previous window's weight continuously;
    // a fit needs answers, and a pace held near 0 brings none).
    const probe = span > 2_000 && (left >= perCall || this.roomBefore(b, t)) ? 60 * perCall : 0;
    return Math.max(0, Math.min(ceiling, Math.max(paced, probe)));
  }

  /** What is left of budget `b` at `t`: less what was sent since, and what others took since. */
  private leftNow(dim: 'requests' | 'tokens', b: Budget, freed: number, t: number): number {
    return b.remaining - (this.newestSent[dim] - b.count) + (Math.min(0, freed) * Math.max(0, t - b.at)) / 60_000;
  }

  /**
   * The room the provider frees meanwhile, per minute, signed: the fit of the newest answers, else
   * the two newest. Under a stated window that stays put, each turn restarts the fit (the room a
   * turn brings is the budget's); until a new one forms, what other clients were seen taking in
   * the last window (a falling slope) is taken to go on.
   */
  private freedOf(dim: 'requests' | 'tokens', b: Budget): number {
    const e = this.freed[dim];
    if (e.slopePerMinute !== undefined) return e.slopePerMinute;
    if (b.stated && this.resetKnown[dim] && !this.resetMoves[dim] && e.carried !== undefined && e.carried < 0)
      return e.carried;
    return this.pair[dim]?.perMinute ?? 0;
  }

  /**
   * Whether, with nothing left of a budget, the provider may free room before its reset: a sliding
   * counter states its window's end and frees its previous window's weight all along; a fixed
   * window frees nothing until then. One call asks: its 429's retry-after says which (a fixed
   * window's is the reset itself), and probing goes on only while 429s say room comes back sooner.
   */
  private roomBefore(b: Budget, t: number): boolean {
    const r = this.lastRefusal;
    if (!r || r.at < b.seen) return true;
    return r.at + r.retryAfterMs < b.until - 1_000 && t >= r.at + r.retryAfterMs;
  }

  /**
   * Milliseconds to send nothing: a budget has less than a call's worth left until its reset, and
   * nothing is freed before it (a fixed window's last moments). 0 while a call may go. A pace
   * near 0 is not enough: a token bucket grants one call at any pace when it is empty, and that
   * call met the window's 429 (the one 429 of every other second under a fixed 1 s window).
   */
  holdMs(): number {
    const t = this.now();
    let hold = 0;
    for (const dim of ['requests', 'tokens'] as const) {
      const b = this.budget[dim];
      if (!b || t >= this.ends(b)) continue;
      const limited = dim === 'requests' ? this.stated.requestsPerMinute : this.stated.tokensPerMinute;
      if (limited === undefined && this.resets[dim].perMinute === undefined) continue;
      const freed = this.freedOf(dim, b);
      const left = this.leftNow(dim, b, freed, t);
      const perCall = dim === 'requests' ? 1 : this.sentTokens / Math.max(1, this.sentRequests);
      // What another client takes in the time of a call at the ceiling is not this lane's (as in
      // budgetPace's reserve).
      if (left >= perCall + Math.max(0, -freed) / Math.max(1, limited ?? this.resets[dim].perMinute!)) continue;
      if (this.turned[dim]) continue; // a window that turned frees room from its start on
      if ((this.freed[dim].slopePerMinute ?? this.pair[dim]?.perMinute ?? 0) > 0) continue;
      if (b.until - t > 2_000 && this.roomBefore(b, t)) continue; // a probe asks
      hold = Math.max(hold, this.ends(b) - t);
    }
    return hold;
  }

  /** When a budget's window is over here: its reset, and for a stated reset the edge past it. */
  private ends(b: Budget): number {
    return b.until + (b.stated ? this.edgeMs : 0);
  }

  /**
   * Milliseconds until the newest budget's reset, when the pace goes back to the ceiling: a call
   * waiting for a bucket at a budget's pace asks again then. Undefined when no budget holds.
   */
  changesInMs(): number | undefined {
    const t = this.now();
    const untils = [this.budget.requests, this.budget.tokens]
      .map((b) => (b === undefined ? undefined : this.ends(b)))
      .filter((u): u is number => u !== undefined && u > t);
    return untils.length === 0 ? undefined : Math.min(...untils) - t;
  }

  /**
   * Why the pace is under half of a limit the provider states, or undefined when it is not: the
   * operator's cap, 429s that lowered the share, a budget that would run out before its reset,
   * or the refill measured from remaining headers (both: another client takes part of the key).
   */
  heldBack(): string | undefined {
    if (this.mode !== 'stated') return undefined;
    const l = this.limits();
    const c = this.o.configured;
    const t = this.now();
    for (const [dim, stated, paced, configured] of [
      ['requests', this.stated.requestsPerMinute, l.requestsPerMinute, c.requestsPerMinute],
      ['tokens', this.stated.tokensPerMinute, l.tokensPerMinute, c.tokensPerMinute],
    ] as const) {
      if (stated === undefined || paced === undefined || paced >= 0.5 * stated) continue;
      const perMinute = `${Math.round(paced)} of ${Math.round(stated)} ${dim} per minute`;
      if (configured !== undefined && configured < 0.5 * stated)
        return `${perMinute}: the configured limit is ${configured}`;
      if (this.share * this.above < 0.5 * this.pace) return `${perMinute}: 429s lowered the share in use`;
      const b = this.budget[dim];
      if (b && t < b.until)
        return `${perMinute}: what remains of the limit would run out before its reset (another client on the key?)`;
      return `${perMinute}: what remains refills slower than stated (another client on the key?)`;
    }
    return undefined;
  }

  /**
   * Remaining-only answers with no reset found: what is left is a budget, held near a margin. The
   * pace is the room freed meanwhile (the slope of remaining + sent: a bucket's refill, a sliding
   * window's oldest calls leaving) plus what is left above the margin spent over `controlMs`;
   * below the margin, the freed rate in proportion to what is left; one call a second at least.
   * No rate estimate holds the pace down: what is left is spent whatever any estimate says.
   */
  private budgetControl(dim: 'requests' | 'tokens', measured: number | undefined): number | undefined {
    const left = this.leftOf(dim);
    if (left === undefined) return measured;
    const perCall = dim === 'requests' ? 1 : this.sentTokens / Math.max(1, this.sentRequests);
    const e = this.refill[dim];
    const freed = Math.max(0, e.slopePerMinute ?? e.perMinute ?? 0);
    const margin = 2 * perCall + controlMargin * e.fullestSeen;
    const pace = left >= margin ? freed + ((left - margin) * 60_000) / controlMs : (freed * Math.max(0, left)) / margin;
    // One call a second at least, for the evidence; where resets were seen but their window is not
    // yet known, ten calls between two resets: one a second found a 1 s window's resets up to a
    // second late, and so never its window (one that meets the window's end is refused with the
    // reset as its retry-after, a reset to the millisecond).
    const gap = this.resets[dim].shortestGapMs;
    const floor = this.resets[dim].windowMs === undefined && gap !== undefined ? Math.max(60, 600_000 / gap) : 60;
    return Math.max(pace, floor * perCall);
  }

  /** What the newest remaining-only answer left, less what was sent since the call it answers. */
  private leftOf(dim: 'requests' | 'tokens'): number | undefined {
    const r = this.refill[dim].last;
    const stamp = this.lastStamp[dim];
    return r === undefined || stamp === undefined ? undefined : r - (this.newestSent[dim] - stamp);
  }

  /** The pace a measured refill allows at the bucket's level now; undefined without a measure. */
  private measuredPaceOf(e: RefillEstimator): number | undefined {
    if (e.perMinute === undefined) return undefined;
    return e.perMinute * Math.max(0.5, this.measuredShare + levelGain * ((e.level ?? levelTarget) - levelTarget));
  }

  /**
   * The provider stated limits: in the headers of an answer (`inAnswer`), or only in a 429's body.
   * Headers come with every answer and follow every change; a limit a 429 states is news only
   * until it changes, so above it the learner probes now and then (see grow()).
   */
  learn(stated: StatedLimits, inAnswer = false): void {
    const any = stated.requestsPerMinute !== undefined || stated.tokensPerMinute !== undefined;
    if (!any) return;
    if (inAnswer) this.statedByHeaders = true;
    if (this.mode !== 'stated') this.statedSince = this.now();
    const raised =
      (stated.requestsPerMinute ?? 0) > (this.stated.requestsPerMinute ?? Infinity) ||
      (stated.tokensPerMinute ?? 0) > (this.stated.tokensPerMinute ?? Infinity);
    const lowered =
      (stated.requestsPerMinute ?? Infinity) < (this.stated.requestsPerMinute ?? 0) ||
      (stated.tokensPerMinute ?? Infinity) < (this.stated.tokensPerMinute ?? 0);
    // A limit stated anew (raised or lowered) makes the refill measured from remaining headers
    // under the old one void: kept, it would cap a doubled limit at what the old refill allowed
    // until the bucket, full meanwhile, taught it otherwise. A new measure forms within seconds
    // if another client still takes part of the key.
    const moved = (next: number | undefined, was: number | undefined) =>
      next !== undefined && was !== undefined && next !== was;
    if (moved(stated.requestsPerMinute, this.stated.requestsPerMinute)) this.refill.requests.forget();
    if (moved(stated.tokensPerMinute, this.stated.tokensPerMinute)) this.refill.tokens.forget();
    if (stated.requestsPerMinute !== undefined) this.stated.requestsPerMinute = stated.requestsPerMinute;
    if (stated.tokensPerMinute !== undefined) this.stated.tokensPerMinute = stated.tokensPerMinute;
    if (!inAnswer) {
      // What remained at most when a 429 stated the limit: more than that later is a raised one.
      if (stated.requestsPerMinute !== undefined) this.raiseBase.requests = this.fullest.requests;
      if (stated.tokensPerMinute !== undefined) this.raiseBase.tokens = this.fullest.tokens;
    }
    if (raised || lowered) {
      // A probe found the new limit: pace at it, and probe again soon. A lowered one: a clean
      // period at it before any probe above (one a few seconds after, in the window the old limit
      // filled, met a 429 and its wait of seconds).
      this.above = 1;
      this.periodStart = this.now();
      this.periodAdmitted = 0;
      this.periodTokens = 0;
      this.periodSent = 0;
    }
  }

  /**
   * What this learner found out, for the other replicas of the key (RateLimiter.shareLearned):
   * limits the provider stated, or the rate probing settled at after a 429. Undefined while it
   * knows nothing of its own: slow start, configured limits, or a refill measure (which forms
   * again within seconds of a start).
   */
  knowledge(): LearnedLimits | undefined {
    const mode = this.mode;
    if (mode === 'stated') return { ...this.stated, by: this.statedByHeaders ? 'headers' : 'body' };
    if (mode === 'probing') return { requestsPerMinute: Math.floor(this.probeRpm), by: 'probing' };
    return undefined;
  }

  /**
   * Begins from what another replica learned (`knowledge()`, through Redis), where this one knows
   * less: stated limits are taken as a 429's body states them (the next answer's headers, where
   * there are any, take over), a probed rate ends slow start. Returns whether it was taken.
   */
  adopt(k: LearnedLimits): boolean {
    const mode = this.mode;
    if (k.by === 'headers' || k.by === 'body') {
      if (mode === 'stated') return false;
      this.learn(k);
      return true;
    }
    if (mode !== 'slow-start' || k.requestsPerMinute === undefined) return false;
    this.slowStart = false;
    this.probeRpm = k.requestsPerMinute;
    this.periodStart = this.now();
    this.periodAdmitted = 0;
    this.periodTokens = 0;
    this.periodSent = 0;
    return true;
  }

  /**
   * A call is about to go out, having reserved `tokens`: its stamp goes to `remaining`. `shared`:
   * what every replica sent on the bucket so far (the shared limiter counts it), else this
   * process's own count is used.
   */
  sent(tokens: number, shared?: { requests: number; tokens: number }): SendStamp {
    this.sentRequests++;
    this.sentTokens += tokens;
    const n = shared ?? { requests: this.sentRequests, tokens: this.sentTokens };
    // The count stamps are measured against: every replica's (shared), or this process's own
    // where no limiter counts them (its own is always the smaller, so the max keeps the shared).
    this.newestSent.requests = Math.max(this.newestSent.requests, n.requests);
    this.newestSent.tokens = Math.max(this.newestSent.tokens, n.tokens);
    const at = this.now();
    this.periodSent++;
    // Slow start doubles on schedule as calls go out, not a latency later as their answers come.
    if (this.mode === 'slow-start') this.grow(at);
    return { at, requests: n.requests, tokens: n.tokens, cost: tokens };
  }

  /**
   * What the answer to a call stamped `s` says remains. Alone (Azure), it is how the limit is
   * measured; beside stated limits, it shows when less is left than stated (another client).
   */
  remaining(s: SendStamp, left: RemainingLimits): void {
    // A budget with a reset (OpenAI's headers, the IETF fields): the newest send's answer holds.
    const keep = (dim: 'requests' | 'tokens', stated: boolean, remaining?: number, resetMs?: number) => {
      if (remaining === undefined || resetMs === undefined) return;
      const count = dim === 'requests' ? s.requests : s.tokens;
      const b = this.budget[dim];
      if (b && b.count > count && b.until > this.now()) return;
      const until = s.at + resetMs;
      // A stated window that stays put turned: what was freed in the old one says nothing of the
      // new (a sliding counter frees its previous window's weight from the turn on, where it
      // freed nothing, or less, before). The fit starts afresh, and until it has formed the pace
      // is the ceiling (see budgetPace).
      const staysPut = this.resetKnown[dim] && !this.resetMoves[dim];
      if (stated && b?.stated && staysPut && s.at >= b.until && until - b.until >= 900) {
        this.freed[dim].restart();
        // Unless the turn brought the room back at once (a fixed window: what is left is the
        // budget, and nothing is freed before the next turn).
        this.turned[dim] = remaining - (b.remaining - (count - b.count)) < 0.5 * this.fullest[dim];
        const windowMs = until - b.until;
        const limit =
          (dim === 'requests' ? this.stated.requestsPerMinute : this.stated.tokensPerMinute) ??
          (this.fullest[dim] / windowMs) * 60_000;
        const own = this.recent.perMinute(this.now(), Math.min(windowMs, recentSeconds * 1_000))[dim];
        this.othersAtTurn[dim] = Math.max(0, limit - (remaining / windowMs) * 60_000 - own);
      }
      this.budget[dim] = { count, remaining, until, at: s.at, seen: this.now(), stated };
      const r = this.resetSeen[dim];
      if (!r || s.at - r.at >= 100) {
        // A reset that passed and one far later (more than twice the time between the two) is a
        // window's turn: it says nothing of whether resets move with time (read as a move, a
        // fixed window was taken for a sliding log until the next look).
        const turn = r !== undefined && r.until <= s.at && s.at + resetMs - r.until > 2 * (s.at - r.at);
        if (r && !turn) {
          this.resetMoves[dim] = s.at + resetMs - r.until >= 0.5 * (s.at - r.at);
          this.resetKnown[dim] = true;
        }
        this.resetSeen[dim] = { at: s.at, until: s.at + resetMs };
      }
    };
    // Without a reset beside what remains, a fixed window's reset as found from the jumps.
    const found = (dim: 'requests' | 'tokens', remaining?: number, resetMs?: number) => {
      if (remaining === undefined || resetMs !== undefined) return resetMs;
      const w = this.resets[dim];
      w.observe(s.at, remaining, dim === 'requests' ? s.requests : s.tokens);
      const next = w.nextReset(s.at);
      return next === undefined ? undefined : next - s.at;
    };
    const pairUp = (dim: 'requests' | 'tokens', remaining?: number) => {
      if (remaining === undefined) return;
      this.fullest[dim] = Math.max(this.fullest[dim], remaining);
      const sum = remaining + (dim === 'requests' ? s.requests : s.tokens);
      const p = this.pair[dim];
      if (p && s.at <= p.at) return;
      // Not across a window's reset (a jump of more than half of the most seen), nor within 50 ms.
      const perMinute =
        p && s.at - p.at >= 50 && sum - p.sum <= 0.5 * this.fullest[dim]
          ? ((sum - p.sum) / (s.at - p.at)) * 60_000
          : undefined;
      this.pair[dim] = { at: s.at, sum, perMinute };
    };
    this.raisedBeyond('requests', left.requests);
    this.raisedBeyond('tokens', left.tokens);
    if (this.firstRemainingAt === Infinity && (left.requests !== undefined || left.tokens !== undefined))
      this.firstRemainingAt = this.now();
    pairUp('requests', left.requests);
    pairUp('tokens', left.tokens);
    if (left.requests !== undefined) this.lastStamp.requests = Math.max(this.lastStamp.requests ?? 0, s.requests);
    if (left.tokens !== undefined) this.lastStamp.tokens = Math.max(this.lastStamp.tokens ?? 0, s.tokens);
    if (this.mode === 'slow-start')
      for (const dim of ['requests', 'tokens'] as const) {
        const l = this.leftOf(dim);
        if (l !== undefined && l < 0.5 * this.fullest[dim]) this.budgetBound = true;
      }
    keep(
      'requests',
      left.resetRequestsMs !== undefined,
      left.requests,
      found('requests', left.requests, left.resetRequestsMs),
    );
    keep('tokens', left.resetTokensMs !== undefined, left.tokens, found('tokens', left.tokens, left.resetTokensMs));
    const before = { r: this.refill.requests.perMinute, t: this.refill.tokens.perMinute };
    if (left.requests !== undefined) this.refill.requests.observe(s.at, left.requests, s.requests, 1);
    if (left.tokens !== undefined) this.refill.tokens.observe(s.at, left.tokens, s.tokens, s.cost);
    if (left.requests !== undefined) this.freed.requests.observe(s.at, left.requests, s.requests, 1);
    if (left.tokens !== undefined) this.freed.tokens.observe(s.at, left.tokens, s.tokens, s.cost);
    const after = { r: this.refill.requests.perMinute, t: this.refill.tokens.perMinute };
    // Under stated limits a measure only caps them (limits()); the periods are the share's.
    if ((after.r === before.r && after.t === before.t) || this.mode !== 'measured') return;
    // A new measure: pace at it again (a raised pace has drained the bucket, or a 429 lowered it).
    if (before.r === undefined && before.t === undefined) this.measuredSince = this.now();
    this.measuredShare = this.measuredPace;
    this.periodStart = this.now();
    this.periodAdmitted = 0;
    this.periodTokens = 0;
    this.periodSent = 0;
  }

  /**
   * Under a limit only 429 bodies stated, an answer saying more remains than any before (a quarter
   * more, once answers have been seen for `cleanMs`) is a raised limit: taken at once, in
   * proportion, rather than found by probing a step a clean period. One too high is stated again
   * by the next 429's body.
   */
  private raisedBeyond(dim: 'requests' | 'tokens', remaining: number | undefined): void {
    const t = this.now();
    // Against what remained at most when the limit was stated (or last raised here), not the most
    // seen since: a bucket whose limit doubled fills up gradually, its fullest rising with it,
    // and was never a quarter above it (a doubled limit held at the old one for the whole run).
    const fullest = this.raiseBase[dim] || this.fullest[dim];
    const key = dim === 'requests' ? 'requestsPerMinute' : 'tokensPerMinute';
    const stated = this.stated[key];
    if (
      remaining === undefined ||
      stated === undefined ||
      this.statedByHeaders ||
      t - this.firstRemainingAt < this.cleanMs ||
      fullest <= 0 ||
      remaining < 1.25 * fullest + 1
    )
      return;
    this.stated[key] = Math.floor((stated * (remaining + 1)) / (fullest + 1));
    this.raiseBase[dim] = remaining;
    this.refill[dim].forget();
    this.above = 1;
  }

  /** A call went through (any answer but a 429), having reserved `tokens`. */
  admitted(tokens: number): void {
    const t = this.now();
    this.recent.add(t, tokens);
    this.periodAdmitted++;
    this.periodTokens += tokens;
    this.grow(t);
  }

  /** A 429 to a call that had reserved `tokens`; the provider said to retry after `retryAfterMs`. */
  rateLimited(tokens = 0, retryAfterMs?: number): void {
    const t = this.now();
    this.lastRefusal = { at: t, retryAfterMs: retryAfterMs ?? 1_000 };
    // A call that met a spent window in the first moments after its reset as reckoned here: the
    // provider's reset comes later than reckoned (see edgeMs).
    for (const b of [this.budget.requests, this.budget.tokens])
      if (
        b?.stated &&
        retryAfterMs !== undefined &&
        retryAfterMs < 250 &&
        t >= b.until &&
        t - b.until < 250 + this.edgeMs
      )
        this.edgeMs = Math.min(50, 2 * this.edgeMs);
    // Under a fixed window, a 429's wait is its reset: a reset seen to the millisecond.
    if (retryAfterMs !== undefined && this.firstRemainingAt !== Infinity) {
      this.resets.requests.refused(t + retryAfterMs);
      this.resets.tokens.refused(t + retryAfterMs);
    }
    this.refill.requests.uncharged(1);
    this.refill.tokens.uncharged(tokens);
    this.freed.requests.uncharged(1);
    this.freed.tokens.uncharged(tokens);
    if (t - this.lastDecreaseAt < this.episodeMs) return; // the same episode
    this.lastDecreaseAt = t;
    this.decreases++;
    const before = this.admittedPerMinute(t);
    if (this.mode === 'measured') {
      this.refill.requests.restart();
      this.refill.tokens.restart();
      if (t - this.measuredSince < 2_000) return;
      const r = this.refill.requests.perMinute;
      const k = this.refill.tokens.perMinute;
      const used = Math.max(r ? before.requests / r : 0, k ? before.tokens / k : 0);
      this.measuredShare = Math.max(this.measuredShare / 2, Math.min(this.measuredShare, 0.95 * used));
    } else if (this.mode === 'stated') {
      if (this.above > 1) {
        // A probe above a limit a 429 stated met it again (a raised one was taken in learn()).
        this.above = 1;
        // Each probe that met the same limit cost a 429 or two; the next waits a clean period
        // again, so that a limit raised meanwhile is found within about one (a wait doubled on each
        // failed probe, up to 16 periods, found a doubled limit minutes late).
        this.periodStart = t;
        this.periodAdmitted = 0;
        this.periodTokens = 0;
        this.periodSent = 0;
        return;
      }
      // 429s of calls sent before the limits were known, or before two seconds of use tell
      // what rate was in use, say nothing of the share.
      if (t - this.statedSince < 2_000) return;
      // The share of the stated limits in use just before, on the dimension nearest its limit;
      // at most halved by one episode.
      const s = this.stated;
      const used = Math.max(
        s.requestsPerMinute ? before.requests / s.requestsPerMinute : 0,
        s.tokensPerMinute ? before.tokens / s.tokensPerMinute : 0,
      );
      // The whole limit was in use just before: the 429 is this lane's own (a window it filled),
      // waited out; no other client's share to make room for.
      if (used >= 0.95) return;
      this.share = Math.max(this.share / 2, Math.min(this.share, 0.95 * used));
    } else if (this.mode !== 'configured') {
      this.slowStart = false;
      // What the provider admitted in the last full second is the best word on its limit.
      const r = this.lastSecondPerMinute(t);
      this.probeRpm = Math.max(1, Math.min(this.probeRpm, r > 0 ? 0.95 * r : this.probeRpm / 2));
    }
    this.periodStart = t;
    this.periodAdmitted = 0;
    this.periodTokens = 0;
    this.periodSent = 0;
  }

  /** Requests admitted in the last second, per minute. */
  private lastSecondPerMinute(t: number): number {
    return this.recent.perMinute(t, 1_000).requests;
  }

  /**
   * Requests and tokens admitted per minute just before: over the last two seconds, or over the
   * last ten where that was more (each over the time admissions were seen, when that is shorter).
   * A window that a burst of this lane's own filled (slow start's last doubling, a sliding
   * window's echo of it) refuses calls for a while after: the rate over the window is the
   * evidence that the 429s are this lane's own doing, not another client's share.
   */
  private admittedPerMinute(t: number): { requests: number; tokens: number } {
    const short = this.recent.perMinute(t, 2_000);
    const long = this.recent.perMinute(t, recentSeconds * 1_000);
    return { requests: Math.max(short.requests, long.requests), tokens: Math.max(short.tokens, long.tokens) };
  }

  /** Whether every remaining-only header seen says its bucket is at least half full. */
  private ample(): boolean {
    const levels = [this.refill.requests.level, this.refill.tokens.level].filter((l) => l !== undefined);
    return levels.length > 0 && levels.every((l) => l >= 0.5);
  }

  /** Whether the last period used most of what is paced at on some dimension. */
  private inUse(elapsedMin: number): boolean {
    const l = this.limits();
    return (
      (l.requestsPerMinute !== undefined && this.periodAdmitted >= 0.8 * l.requestsPerMinute * elapsedMin) ||
      (l.tokensPerMinute !== undefined && this.periodTokens >= 0.8 * l.tokensPerMinute * elapsedMin)
    );
  }

  private grow(t: number): void {
    // Slow start doubles each half second (a 429's body, where there is one, then states the
    // limit); twice as fast while remaining-only headers say the bucket is at least half full
    // (Azure's holds 10 s of rate): the refill shows once it drains.
    const slowPeriod = this.ample() ? 250 : 500;
    const probing =
      this.mode === 'stated' && !this.statedByHeaders && this.firstRemainingAt === Infinity && this.share >= this.pace;
    // Above a limit a 429's body stated, the first step (a tenth above) waits a clean period at the
    // limit and lasts a quarter of a clean period; one that went through means the limit has
    // moved, and the next steps (a fifth more each) come a second apart up to twice the limit: the
    // first 429 above the new limit states it (one too far costs a 429 episode, as any failed
    // probe does). At twice, a tenth more each clean period: climbing on, a bucket's stored burst
    // was spent at up to 3.7 times a doubled limit before the 429 came.
    const period =
      this.slowStart && this.mode === 'slow-start'
        ? slowPeriod
        : probing
          ? this.above === 1
            ? this.cleanMs
            : this.above <= this.growth
              ? this.cleanMs / 4
              : this.above < 2
                ? 1_000
                : this.cleanMs
          : this.cleanMs;
    if (t - this.periodStart < period) return;
    const elapsedMin = (t - this.periodStart) / 60_000;
    const mode = this.mode;
    const inUse = (rpm: number) => this.periodAdmitted >= 0.8 * rpm * elapsedMin;
    if (mode === 'slow-start') {
      if (this.periodSent >= 0.8 * (this.probeRpm * elapsedMin)) this.probeRpm *= 2;
    } else if (mode === 'probing') {
      if (inUse(this.probeRpm)) this.probeRpm *= this.growth;
    } else if (mode === 'stated' && this.share < this.pace) {
      this.share = Math.min(this.pace, this.share * this.growth);
    } else if (mode === 'stated' && (this.refill.requests.full || this.refill.tokens.full)) {
      // The bucket is full again after a clean period: whoever else drew on it has stopped.
      if (this.refill.requests.full) this.refill.requests.forget();
      if (this.refill.tokens.full) this.refill.tokens.forget();
    } else if (probing && this.inUse(elapsedMin)) {
      // Above a limit only a 429 stated: 1.1 of it, then 1.32, 1.58, 1.90, 2, then 2.2, 2.42 …
      // Overshooting is cheap: the next 429's body states the limit again.
      this.above =
        this.above === 1 ? this.growth : this.above < 2 ? Math.min(2, 1.2 * this.above) : this.growth * this.above;
    } else if (mode === 'measured' && this.inUse(elapsedMin)) {
      // No 429 and no new measure for a period: the bucket stays full, the limit may be higher.
      this.measuredShare *= this.growth;
    }
    this.periodStart = t;
    this.periodAdmitted = 0;
    this.periodTokens = 0;
    this.periodSent = 0;
  }
}

/**
 * Admissions (requests, tokens) in 100 ms bins over the last `spanMs`: the rate over any recent
 * span to a tenth of a second. Whole-second bins counted a lane's first, partial second as a
 * second of use, and read a lane at its limit two seconds after its start as 0.8 of it.
 */
class AdmittedLog {
  private static readonly binMs = 100;
  private readonly bins: number;
  private readonly at: Float64Array;
  private readonly requests: Float64Array;
  private readonly tokens: Float64Array;
  private first = Infinity;

  constructor(spanMs: number) {
    this.bins = Math.ceil(spanMs / AdmittedLog.binMs) + 1;
    this.at = new Float64Array(this.bins).fill(-1);
    this.requests = new Float64Array(this.bins);
    this.tokens = new Float64Array(this.bins);
  }

  add(t: number, tokens: number): void {
    const bin = Math.floor(t / AdmittedLog.binMs);
    const i = bin % this.bins;
    if (this.at[i] !== bin) {
      this.at[i] = bin;
      this.requests[i] = 0;
      this.tokens[i] = 0;
    }
    this.requests[i]!++;
    this.tokens[i]! += tokens;
    this.first = Math.min(this.first, t);
  }

  /**
   * Per minute over the last `overMs` of whole tenths of a second (the current one is not over),
   * or since the first admission when that is later.
   */
  perMinute(t: number, overMs: number): { requests: number; tokens: number } {
    const bin = Math.floor(t / AdmittedLog.binMs);
    const n = Math.min(this.bins - 1, Math.round(overMs / AdmittedLog.binMs));
    let requests = 0;
    let tokens = 0;
    for (let b = bin - n; b < bin; b++) {
      const i = ((b % this.bins) + this.bins) % this.bins;
      if (this.at[i] !== b) continue;
      requests += this.requests[i]!;
      tokens += this.tokens[i]!;
    }
    const from = Math.max((bin - n) * AdmittedLog.binMs, this.first);
    const spanMs = Math.max(AdmittedLog.binMs, bin * AdmittedLog.binMs - from);
    return { requests: (requests * 60_000) / spanMs, tokens: (tokens * 60_000) / spanMs };
  }
}
