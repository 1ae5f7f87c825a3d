import { existsSync, readFileSync } from 'node:fs';
import { parseEnvFile } from '@sluice/testing';
import { envFile } from '../stack/paths.js';
import { stackStatus, stackUp } from '../stack/stack.js';

/**
 * npm test's globalSetup: when the stack's settings are not in the environment, make sure the
 * local stack runs (starting what is missing) and export its settings to the test workers. The
 * stack is left running for the next run; `npm run stack:down` stops it.
 */
export default async function setup(): Promise<void> {
  if (process.env['SLUICE_KAFKA_BROKERS']) return; // a stack chosen by whoever runs the tests
  const status = await stackStatus();
  if (!status.every((s) => s.state === 'running') || !existsSync(envFile)) {
    const log = (line: string) => process.stderr.write(`[stack] ${line}\n`);
    log('starting the local stack for the tests (npm run stack:down stops it)');
    try {
      await stackUp(log);
    } catch (err) {
      throw new Error(
        `The local stack could not be started, so no test that needs it can run: ${(err as Error).message}\n` +
          'Start it by hand with `npm run stack:up` to see the details.',
      );
    }
  }
  Object.assign(process.env, parseEnvFile(readFileSync(envFile, 'utf8')));
}
