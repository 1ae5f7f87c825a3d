import { describe, expect, it } from 'vitest';
import { DelayConfigError, loadDelayConfig } from '../src/config.js';

describe("the delay processor's settings", () => {
  it('reads them, and reports every bad one at once', () => {
    expect(loadDelayConfig({ SLUICE_KAFKA_BROKERS: 'a:1,b:2', SLUICE_CONSUMER_STALL_MS: '30000' })).toMatchObject({
      kafkaBrokers: ['a:1', 'b:2'],
      consumerStallMs: 30_000,
      crash: undefined,
    });
    let err: unknown;
    try {
      loadDelayConfig({ SLUICE_CONSUMER_STALL_MS: 'soon' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DelayConfigError);
    expect((err as DelayConfigError).problems).toEqual([
      'SLUICE_KAFKA_BROKERS is not set: run `npm run stack:up` and source .sluice/stack.env, or set it',
      'SLUICE_CONSUMER_STALL_MS=soon: give a whole number of at least 1000',
    ]);
  });
});
