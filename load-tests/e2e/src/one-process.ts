/**
 * bench:e2e's one-process form: every role in this process through startDev, as `sluice dev` runs
 * them. Settings from the environment (the stack's, SLUICE_INGEST_PORT, ...) and the lanes from
 * E2E_LANES (JSON: [{provider, adapter, apiKey, baseUrl}]). Runs until SIGTERM.
 */
import { pino } from 'pino';
import { startDev, type DevLane } from '../../../dev/sluice/dev.js';

const lanes = JSON.parse(process.env['E2E_LANES'] ?? '[]') as Array<DevLane & { adapter: DevLane['adapter'] }>;
const log = pino({ level: process.env['LOG_LEVEL'] ?? 'warn' });
const running = await startDev({
  env: process.env,
  lanes: lanes.map((l) => ({ ...l, keyId: l.apiKey })),
  log,
  port: Number(process.env['SLUICE_INGEST_PORT']),
});
const stop = () => {
  void running.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The process lives until it is told to stop.
setInterval(() => undefined, 60_000);
