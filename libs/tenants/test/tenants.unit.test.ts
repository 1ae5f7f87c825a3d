import { describe, expect, it } from 'vitest';
import {
  defaultTenantPolicy,
  isPrivateAddress,
  parseTenantPolicies,
  TenantPolicyError,
  topicAllowed,
  webhookSecretFor,
  webhookUrlProblem,
} from '../src/index.js';

describe('tenant policies (SLUICE_TENANTS)', () => {
  it('gives every tenant the defaults when unset, "*" to tenants not named, and a named tenant\'s settings over "*"', () => {
    expect(parseTenantPolicies(undefined).of('anyone')).toEqual(defaultTenantPolicy);
    const p = parseTenantPolicies(
      JSON.stringify({ '*': { maxOpenJobs: 20 }, research: { pubsubTopics: ['research-*'], maxOpenRows: 5 } }),
    );
    expect(p.of('other')).toEqual({ ...defaultTenantPolicy, maxOpenJobs: 20 });
    expect(p.of('research')).toEqual({
      ...defaultTenantPolicy,
      maxOpenJobs: 20,
      maxOpenRows: 5,
      pubsubTopics: ['research-*'],
    });
  });

  it('reports every bad setting at once, saying where and what to give', () => {
    let err: unknown;
    try {
      parseTenantPolicies(
        JSON.stringify({ a: { maxOpenJobs: -1, colour: 'red' }, b: { privateWebhooks: 'yes', pubsubTopics: 'x' } }),
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TenantPolicyError);
    expect((err as TenantPolicyError).problems).toEqual([
      'a.maxOpenJobs: give a whole number of at least 0, not -1',
      'a.colour: no such setting (settings: pubsubTopics, privateWebhooks, maxOpenJobs, maxOpenRows, uploadBytesPerMinute)',
      'b.privateWebhooks: give true or false',
      'b.pubsubTopics: give a list of topic names or prefixes ending in *',
    ]);
    expect(() => parseTenantPolicies('{not json')).toThrow(/SLUICE_TENANTS is not valid:\n {2}not JSON/);
  });

  it('allows a topic by its name, its full name or a prefix, and nothing by default', () => {
    const p = parseTenantPolicies(JSON.stringify({ t: { pubsubTopics: ['done', 'research-*'] } })).of('t');
    expect(topicAllowed(p, 'done')).toBe(true);
    expect(topicAllowed(p, 'projects/acme/topics/done')).toBe(true);
    expect(topicAllowed(p, 'research-weekly')).toBe(true);
    expect(topicAllowed(p, 'finance-done')).toBe(false);
    expect(topicAllowed(defaultTenantPolicy, 'done')).toBe(false);
    expect(topicAllowed({ ...defaultTenantPolicy, pubsubTopics: ['*'] }, 'anything')).toBe(true);
    const full = { ...defaultTenantPolicy, pubsubTopics: ['projects/p/topics/shared-done'] };
    expect(topicAllowed(full, 'shared-done')).toBe(true);
    expect(topicAllowed(full, 'projects/p/topics/shared-done')).toBe(true);
    expect(topicAllowed(full, 'projects/q/topics/shared-done')).toBe(false);
  });

  it('derives a webhook key per tenant from the platform secret', () => {
    const a = webhookSecretFor('platform', 'alice');
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(webhookSecretFor('platform', 'alice')).toBe(a);
    expect(webhookSecretFor('platform', 'bob')).not.toBe(a);
    expect(webhookSecretFor('other', 'alice')).not.toBe(a);
  });

  it('tells private addresses, in every spelling, from public ones', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.31.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0'])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ['::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe'])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ['8.8.8.8', '172.32.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8'])
      expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses webhook URLs to this machine or a private network by name alone, unless the tenant allows them', () => {
    const p = defaultTenantPolicy;
    expect(webhookUrlProblem('https://hooks.example.com/sluice', p)).toBeUndefined();
    for (const url of [
      'http://localhost:8080/x',
      'http://api.localhost/x',
      'http://127.0.0.1/x',
      'http://2130706433/x', // 127.0.0.1 as one number
      'http://0x7f.1/x',
      'http://[::1]/x',
      'http://[::ffff:169.254.169.254]/latest/meta-data',
      'http://169.254.169.254/latest/meta-data',
    ])
      expect(webhookUrlProblem(url, p), url).toMatch(/loopback, private or link-local/);
    expect(webhookUrlProblem('ftp://example.com/x', p)).toBe('a webhook is http or https, not ftp:');
    expect(webhookUrlProblem('https://user:pw@example.com/x', p)).toMatch(/no credentials/);
    expect(webhookUrlProblem('http://127.0.0.1/x', { ...p, privateWebhooks: true })).toBeUndefined();
  });
});
