import type { RateHeaders } from './types.js';

interface HeaderSource {
  get(name: string): string | null;
}

/** Go's time.Duration text ("6m0s", "1.5s", "12ms", "1h2m3s") in milliseconds. */
export function parseGoDuration(text: string | null | undefined): number | undefined {
  if (!text) return undefined;
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g;
  let total = 0;
  let matched = false;
  for (const m of text.matchAll(re)) {
    matched = true;
    const v = Number(m[1]);
    const unit = m[2];
    total +=
      unit === 'h'
        ? v * 3_600_000
        : unit === 'm'
          ? v * 60_000
          : unit === 's'
            ? v * 1_000
            : unit === 'ms'
              ? v
              : v / 1_000_000;
  }
  return matched ? total : undefined;
}

function num(h: HeaderSource, name: string): number | undefined {
  const raw = h.get(name);
  if (raw === null || raw === '') return undefined;
  const v = Number(raw);
  // Azure sometimes sends -1: no information.
  return Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** One item of a Structured Fields list: its name (a string or a token) and its parameters. */
interface SfItem {
  name: string;
  params: Map<string, string>;
}

/** A Structured Fields list (RFC 9651) as the RateLimit fields use it; malformed items are dropped. */
function sfList(text: string): SfItem[] {
  const items: SfItem[] = [];
  for (const raw of text.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? []) {
    const parts = raw.match(/(?:[^;"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
    const name = parts[0]?.trim().replace(/^"(.*)"$/, '$1');
    if (!name) continue;
    const params = new Map<string, string>();
    for (const p of parts.slice(1)) {
      const eq = p.indexOf('=');
      const k = (eq < 0 ? p : p.slice(0, eq)).trim();
      if (k)
        params.set(
          k,
          eq < 0
            ? '?1'
            : p
                .slice(eq + 1)
                .trim()
                .replace(/^"(.*)"$/, '$1'),
        );
    }
    items.push({ name, params });
  }
  return items;
}

/**
 * The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` states a
 * quota `q` per window `w` seconds in a unit `qu` (requests unless it names tokens), `RateLimit`
 * what remains (`r`) and the seconds until it resets (`t`), matched by policy name. Limits are
 * turned into per-minute figures; the window is kept beside them.
 */
function readIetfHeaders(h: HeaderSource, out: RateHeaders): void {
  const policy = h.get('ratelimit-policy');
  const state = h.get('ratelimit');
  if (!policy && !state) return;
  const units = new Map<string, 'requests' | 'tokens'>();
  const finite = (v: string | undefined) =>
    v !== undefined && Number.isFinite(Number(v)) && Number(v) >= 0 ? Number(v) : undefined;
  for (const p of sfList(policy ?? '')) {
    const dim = /token/i.test(p.params.get('qu') ?? '') ? 'tokens' : 'requests';
    units.set(p.name, dim);
    const q = finite(p.params.get('q'));
    const w = finite(p.params.get('w')) ?? 60;
    if (q === undefined || w <= 0) continue;
    if (dim === 'requests') {
      out.limitRequests = (q * 60) / w;
      out.windowRequestsMs = w * 1_000;
    } else {
      out.limitTokens = (q * 60) / w;
      out.windowTokensMs = w * 1_000;
    }
  }
  for (const s of sfList(state ?? '')) {
    const dim = units.get(s.name) ?? 'requests';
    const r = finite(s.params.get('r'));
    // `t` is whole seconds, the true reset anywhere in the second before it: the middle of that
    // second is taken (a budget spread to its end would leave up to a second of it unused).
    const whole = finite(s.params.get('t'));
    const t = whole === undefined ? undefined : Math.max(0, whole - 0.5);
    if (dim === 'requests') {
      if (r !== undefined) out.remainingRequests = r;
      if (t !== undefined) out.resetRequestsMs = t * 1_000;
    } else {
      if (r !== undefined) out.remainingTokens = r;
      if (t !== undefined) out.resetTokensMs = t * 1_000;
    }
  }
}

/**
 * Rate headers: x-ratelimit-* (OpenAI sends all six, Azure the remaining ones), or the IETF
 * draft's RateLimit-Policy and RateLimit fields.
 */
export function readRateHeaders(h: HeaderSource | undefined): RateHeaders {
  if (!h) return {};
  const out: RateHeaders = {};
  readIetfHeaders(h, out);
  const set = <K extends keyof RateHeaders>(k: K, v: number | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set('limitRequests', num(h, 'x-ratelimit-limit-requests'));
  set('remainingRequests', num(h, 'x-ratelimit-remaining-requests'));
  set('resetRequestsMs', parseGoDuration(h.get('x-ratelimit-reset-requests')));
  set('limitTokens', num(h, 'x-ratelimit-limit-tokens'));
  set('remainingTokens', num(h, 'x-ratelimit-remaining-tokens'));
  set('resetTokensMs', parseGoDuration(h.get('x-ratelimit-reset-tokens')));
  return out;
}

/**
 * How long the provider asked us to wait: retry-after-ms, then retry-after (seconds or an HTTP
 * date), then OpenAI's "Please try again in 1.234s" / "in 120ms" in the message. A message's
 * wait shorter than a whole-second retry-after is the same wait, rounded up in the header: the
 * message's is kept (a sliding window frees its next call in milliseconds, and a lane that waited
 * out a rounded second lost a second's calls at each 429).
 */
export function retryAfterMs(h: HeaderSource | undefined, message?: string): number | undefined {
  const ms = h?.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Number(ms);
  const m = message ? /try again in (\d+(?:\.\d+)?)(ms|s)\b/i.exec(message) : null;
  const said = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : 1_000) : undefined;
  const after = h?.get('retry-after');
  if (after) {
    const seconds = Number(after);
    if (Number.isFinite(seconds))
      return said !== undefined && said < seconds * 1_000 && seconds === Math.max(1, Math.ceil(said / 1_000))
        ? said
        : seconds * 1_000;
    const date = Date.parse(after);
    if (Number.isFinite(date)) return Math.max(0, date - Date.now());
  }
  return said;
}

/**
 * The limit an OpenAI-style 429 states in its message: "... on tokens per min (TPM): Limit
 * 200000, Used ...". Azure's and others' bodies state none.
 */
export function limitFromMessage(message: string | undefined): RateHeaders {
  const m = message ? /on (requests|tokens) per min \((?:RPM|TPM)\): Limit (\d+)/i.exec(message) : null;
  if (!m) return {};
  const v = Number(m[2]);
  return m[1]!.toLowerCase() === 'requests' ? { limitRequests: v } : { limitTokens: v };
}
