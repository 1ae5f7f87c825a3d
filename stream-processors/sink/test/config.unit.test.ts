import { describe, expect, it } from 'vitest';
import { loadSinkConfig, sinkGroup } from '../src/config.js';

const base = {
  SLUICE_KAFKA_BROKERS: '127.0.0.1:9092',
  SLUICE_REDIS_URL: 'redis://127.0.0.1:6379',
  SLUICE_SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081',
};

describe('the sink group', () => {
  // Two sinks of different tenants in one group split sluice.jobs's partitions, and each skips
  // the other's jobs on the partitions it holds: those jobs were never written (found by running
  // bench:e2e beside another run on one stack: 3 of 4 jobs never announced).
  it('is one group per set of tenants, the same whatever their order, and sluice-sink for all', () => {
    expect(loadSinkConfig(base).groupId).toBe('sluice-sink');
    const ab = loadSinkConfig({ ...base, SLUICE_SINK_TENANTS: 'a,b' }).groupId;
    expect(ab).toMatch(/^sluice-sink\.[0-9a-f]{12}$/);
    expect(loadSinkConfig({ ...base, SLUICE_SINK_TENANTS: ' b , a' }).groupId).toBe(ab);
    expect(loadSinkConfig({ ...base, SLUICE_SINK_TENANTS: 'c' }).groupId).not.toBe(ab);
    expect(sinkGroup(['a', 'b', 'a'])).toBe(ab);
  });

  it('is what SLUICE_SINK_GROUP says, when set', () => {
    expect(loadSinkConfig({ ...base, SLUICE_SINK_TENANTS: 'a', SLUICE_SINK_GROUP: 'sink-eu' }).groupId).toBe('sink-eu');
  });
});
