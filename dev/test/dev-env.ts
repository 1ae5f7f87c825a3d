import { hashApiKey } from '@sluice/ingest-api';
import { connectionEnv, type StackSettings } from '@sluice/testing';

/**
 * The environment of a `sluice dev` under test: the stack's connections, one tenant with one API
 * key, one lane serving gpt-4o-mini, results in a bucket of its own, announcements on a topic of
 * its own, parts written every half second; `extra` on top.
 */
export function devEnv(
  s: StackSettings,
  o: { tenant: string; key: string; lane: string; bucket: string; topic: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...connectionEnv(s),
    SLUICE_RESULTS_BUCKET: o.bucket,
    SLUICE_PUBSUB_TOPIC: o.topic,
    SLUICE_API_KEYS: `${o.tenant}:${hashApiKey(o.key)}`,
    SLUICE_SINK_TENANTS: o.tenant,
    SLUICE_MODELS: JSON.stringify({ [o.lane]: ['gpt-4o-mini'] }),
    SLUICE_SINK_FLUSH_MS: '500',
    ...extra,
  };
}
