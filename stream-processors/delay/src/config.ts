import { CrashPoint } from '@sluice/errors';

export interface DelayConfig {
  /** SLUICE_KAFKA_BROKERS */
  kafkaBrokers: string[];
  /** A consumer with no fetch for this long is replaced. @default 45000 (SLUICE_CONSUMER_STALL_MS) */
  consumerStallMs: number | undefined;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash: CrashPoint | undefined;
}

export class DelayConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`the delay processor's settings are not valid:\n  ${problems.join('\n  ')}`);
    this.name = 'DelayConfigError';
  }
}

/** The only reader of process.env for the delay processor; every bad setting is reported at once. */
export function loadDelayConfig(env: NodeJS.ProcessEnv = process.env): DelayConfig {
  const problems: string[] = [];
  const brokers = env['SLUICE_KAFKA_BROKERS'];
  if (!brokers) problems.push('SLUICE_KAFKA_BROKERS is not set: run `npm run stack:up` and source .sluice/stack.env');
  const stall = env['SLUICE_CONSUMER_STALL_MS'];
  if (stall !== undefined && stall !== '' && !(Number.isInteger(Number(stall)) && Number(stall) >= 1_000))
    problems.push(`SLUICE_CONSUMER_STALL_MS=${stall}: give a whole number of milliseconds, at least 1000`);
  let crash: CrashPoint | undefined;
  try {
    crash = CrashPoint.parse(env['SLUICE_CRASH_POINT']);
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (problems.length > 0) throw new DelayConfigError(problems);
  return {
    kafkaBrokers: brokers!.split(','),
    consumerStallMs: stall ? Number(stall) : undefined,
    crash,
  };
}
