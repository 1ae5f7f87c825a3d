import { isMainModule, runRole, type RunningRole } from '@sluice/errors';
import { createKafka } from '@sluice/kafka';
import { createLogger } from '@sluice/logging';
import { loadDelayConfig } from './config.js';
import { DelayProcessor } from './delay-processor.js';

const log = createLogger('delay');

/** Starts the delay processor (settings: loadDelayConfig). */
export async function main(): Promise<RunningRole> {
  const config = loadDelayConfig();
  const delay = new DelayProcessor({
    kafka: createKafka({ brokers: config.kafkaBrokers, clientId: 'sluice-delay', logger: log }),
    log,
    crash: config.crash,
    consumerStallMs: config.consumerStallMs,
  });
  await delay.start();
  log.info({}, 'delay processor running');
  return { stop: () => delay.stop() };
}

if (isMainModule(import.meta.url)) runRole('delay', log, main);
