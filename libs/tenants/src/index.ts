import { createHmac } from 'node:crypto';
import { BlockList, isIP } from 'node:net';

/**
 * What one tenant may do. Read from SLUICE_TENANTS by the ingest API (topics, webhook addresses
 * and quotas at job creation and upload) and by the sink (webhook addresses when it posts).
 */
export interface TenantPolicy {
  /**
   * Pub/Sub topics the tenant's jobs may name in `notifications.pubsubTopic`: a topic's name
   * (`jobs-done`, or in full `projects/P/topics/jobs-done`), or a prefix ending in `*`
   * (`research-*`; `*` alone allows any). None by default: a job announces on the platform's topic.
   */
  pubsubTopics: readonly string[];
  /** Whether webhooks may go to loopback, private and link-local addresses. @default false */
  privateWebhooks: boolean;
  /** Jobs not yet ended (open, sealed, running) at once. @default 1000 */
  maxOpenJobs: number;
  /** Rows of the jobs not yet ended, together. @default 100,000,000 */
  maxOpenRows: number;
  /** Bytes uploaded per minute, over all the tenant's uploads; 0: no limit. @default 0 */
  uploadBytesPerMinute: number;
}

export const defaultTenantPolicy: TenantPolicy = Object.freeze({
  pubsubTopics: Object.freeze([]) as readonly string[],
  privateWebhooks: false,
  maxOpenJobs: 1_000,
  maxOpenRows: 100_000_000,
  uploadBytesPerMinute: 0,
});

/** A bad SLUICE_TENANTS: every problem found, one a line. */
export class TenantPolicyError extends Error {
  constructor(readonly problems: string[]) {
    super(`SLUICE_TENANTS is not valid:\n  ${problems.join('\n  ')}\nSee docs/tenants.md.`);
    this.name = 'TenantPolicyError';
  }
}

/** The policy of every tenant: the ones named, and `*` for the rest. */
export class TenantPolicies {
  constructor(
    private readonly named: ReadonlyMap<string, TenantPolicy> = new Map(),
    readonly fallback: TenantPolicy = defaultTenantPolicy,
  ) {}

  of(tenant: string): TenantPolicy {
    return this.named.get(tenant) ?? this.fallback;
  }
}

const fields: Record<keyof TenantPolicy, 'topics' | 'boolean' | 'count'> = {
  pubsubTopics: 'topics',
  privateWebhooks: 'boolean',
  maxOpenJobs: 'count',
  maxOpenRows: 'count',
  uploadBytesPerMinute: 'count',
};

/**
 * Reads SLUICE_TENANTS: a JSON object from tenant to the settings that differ from the defaults,
 * `*` for tenants not named (a named tenant's settings go over `*`'s). Every problem is reported
 * at once. Absent or empty: every tenant has the defaults.
 */
export function parseTenantPolicies(raw: string | undefined): TenantPolicies {
  if (raw === undefined || raw.trim() === '') return new TenantPolicies();
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new TenantPolicyError([
      `not JSON (${(err as Error).message}): give {"tenant": {"maxOpenJobs": 50}, "*": {...}}`,
    ]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new TenantPolicyError(['give a JSON object from tenant name (or "*") to its settings']);
  const problems: string[] = [];
  const read = (tenant: string, value: unknown, base: TenantPolicy): TenantPolicy => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${tenant}: give an object of settings, not ${JSON.stringify(value)}`);
      return base;
    }
    const out: Record<string, unknown> = { ...base };
    for (const [key, v] of Object.entries(value)) {
      const kind = fields[key as keyof TenantPolicy];
      const where = `${tenant}.${key}`;
      if (kind === undefined) problems.push(`${where}: no such setting (settings: ${Object.keys(fields).join(', ')})`);
      else if (kind === 'boolean' && typeof v !== 'boolean') problems.push(`${where}: give true or false`);
      else if (kind === 'count' && !(Number.isSafeInteger(v) && (v as number) >= 0))
        problems.push(`${where}: give a whole number of at least 0, not ${JSON.stringify(v)}`);
      else if (kind === 'topics' && !(Array.isArray(v) && v.every((t) => typeof t === 'string' && t !== '')))
        problems.push(`${where}: give a list of topic names or prefixes ending in *`);
      else out[key] = kind === 'topics' ? Object.freeze([...(v as string[])]) : v;
    }
    return Object.freeze(out) as unknown as TenantPolicy;
  };
  const entries = Object.entries(parsed as Record<string, unknown>);
  const star = entries.find(([t]) => t === '*');
  const fallback = star ? read('*', star[1], defaultTenantPolicy) : defaultTenantPolicy;
  const named = new Map<string, TenantPolicy>();
  for (const [tenant, value] of entries) if (tenant !== '*') named.set(tenant, read(tenant, value, fallback));
  if (problems.length > 0) throw new TenantPolicyError(problems);
  return new TenantPolicies(named, fallback);
}

/** A topic's own name: `jobs-done` of `projects/P/topics/jobs-done`. */
function topicName(topic: string): string {
  const i = topic.lastIndexOf('/topics/');
  return i >= 0 ? topic.slice(i + '/topics/'.length) : topic;
}

/**
 * Whether `policy` lets a job announce on `topic`. An entry and a topic match by their names where
 * either is given by its name alone (`done` and `projects/P/topics/done`), in full where both are;
 * an entry ending in `*` matches the names that begin with what comes before it.
 */
export function topicAllowed(policy: TenantPolicy, topic: string): boolean {
  const full = (t: string) => t.includes('/topics/');
  return policy.pubsubTopics.some((entry) => {
    const [a, b] = full(entry) && full(topic) ? [entry, topic] : [topicName(entry), topicName(topic)];
    return a.endsWith('*') ? b.startsWith(a.slice(0, -1)) : a === b;
  });
}

/**
 * The key a tenant's webhooks are signed with: HMAC-SHA256 of the tenant's name under the
 * platform's secret (SLUICE_WEBHOOK_SECRET). Each tenant's differs, so that one tenant's key
 * signs nothing another trusts; the tenant reads its own with GET /v1/webhook-secret.
 */
export function webhookSecretFor(platformSecret: string, tenant: string): string {
  return `whsec_${createHmac('sha256', platformSecret).update(`sluice-webhook:${tenant}`).digest('base64url')}`;
}

/**
 * Addresses a webhook may not reach unless its tenant allows private webhooks: this host and
 * its network (loopback, private, shared, link-local, unique-local, multicast, reserved, and
 * the IPv4 forms embedded in IPv6).
 */
const privateRanges = (() => {
  const b = new BlockList();
  for (const [net, bits] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.0.0.0', 24],
    ['192.168.0.0', 16],
    ['198.18.0.0', 15],
    ['224.0.0.0', 4],
    ['240.0.0.0', 4],
  ] as const)
    b.addSubnet(net, bits, 'ipv4');
  for (const [net, bits] of [
    ['::', 128],
    ['::1', 128],
    ['fc00::', 7],
    ['fe80::', 10],
    ['ff00::', 8],
  ] as const)
    b.addSubnet(net, bits, 'ipv6');
  return b;
})();

/** Whether `address` (an IP literal) is one a webhook may not reach by default. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family !== 6) return false;
  const lower = address.toLowerCase();
  // IPv4 inside IPv6: mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d), dotted or in hex.
  const embedded = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/.exec(lower);
  if (embedded) {
    const v4 = embedded[1] ?? hexToV4(embedded[2]!, embedded[3]!);
    return privateRanges.check(v4, 'ipv4');
  }
  return privateRanges.check(lower, 'ipv6');
}

function hexToV4(high: string, low: string): string {
  const h = parseInt(high, 16);
  const l = parseInt(low, 16);
  return `${h >> 8}.${h & 255}.${l >> 8}.${l & 255}`;
}

/**
 * Why a webhook URL may not be used, or undefined when it may: http(s) only, no credentials in
 * it, and, unless `privateWebhooks`, no host that is this machine or a private address by its
 * name alone (`localhost`, an IP literal). Names that resolve to such addresses are refused when
 * the sink posts (it checks every address it connects to).
 */
export function webhookUrlProblem(url: string, policy: TenantPolicy): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `a webhook is http or https, not ${u.protocol}`;
  if (u.username || u.password) return 'a webhook URL carries no credentials: requests are signed instead';
  if (policy.privateWebhooks) return undefined;
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || isPrivateAddress(host))
    return `${host} is a loopback, private or link-local address, which this tenant's webhooks may not reach`;
  return undefined;
}
