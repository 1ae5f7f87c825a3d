import { ConfigError, Settings } from '@sluice/config';
import { CrashPoint } from '@sluice/errors';

export interface DelayConfig {
  /** SLUICE_KAFKA_BROKERS */
  kafkaBrokers: string[];
  /** A consumer with no fetch for this long is replaced. @default 45000 (SLUICE_CONSUMER_STALL_MS) */
  consumerStallMs: number;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash: CrashPoint | undefined;
}

export { ConfigError as DelayConfigError };

/** The only reader of process.env for the delay processor; every bad setting is reported at once. */
export function loadDelayConfig(env: NodeJS.ProcessEnv = process.env): DelayConfig {
  const s = new Settings(env, 'delay processor');
  const config: DelayConfig = {
    kafkaBrokers: s.required('SLUICE_KAFKA_BROKERS').split(','),
    consumerStallMs: s.int('SLUICE_CONSUMER_STALL_MS', 45_000, 1_000),
    crash: s.parsed(() => CrashPoint.parse(env['SLUICE_CRASH_POINT']), undefined),
  };
  s.done();
  return config;
}
