import { pino } from 'pino';
import { CrashPoint, exitOnUnhandledErrors } from '@sluice/errors';
import { createKafka } from '@sluice/kafka';
import { DelayProcessor } from './delay-processor.js';

/** Runs the delay processor until SIGTERM. Reads SLUICE_KAFKA_BROKERS (and SLUICE_CRASH_POINT, SLUICE_CONSUMER_STALL_MS). */
export async function main(): Promise<void> {
  const brokers = process.env['SLUICE_KAFKA_BROKERS'];
  if (!brokers) throw new Error('SLUICE_KAFKA_BROKERS is not set: run `npm run stack:up` and source .sluice/stack.env');
  const log = pino({ name: 'delay' });
  exitOnUnhandledErrors(log);
  const delay = new DelayProcessor({
    kafka: createKafka({ brokers: brokers.split(','), clientId: 'sluice-delay', logger: log }),
    log,
    crash: CrashPoint.parse(process.env['SLUICE_CRASH_POINT']),
    consumerStallMs: process.env['SLUICE_CONSUMER_STALL_MS']
      ? Number(process.env['SLUICE_CONSUMER_STALL_MS'])
      : undefined,
  });
  await delay.start();
  log.info({}, 'delay processor running');
  const shutdown = async () => {
    await delay.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(`delay: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
