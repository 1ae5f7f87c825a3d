import { logLevel, type LogEntry } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { logCreator } from '../src/index.js';

function bridge() {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino(
    { level: 'debug' },
    { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) },
  );
  const log = logCreator(logger)();
  const entry = (level: logLevel, message: string, extra: Record<string, unknown> = {}): LogEntry => ({
    namespace: 'Producer',
    level,
    label: 'ERROR',
    log: { timestamp: new Date().toISOString(), message, ...extra },
  });
  return { lines, log, entry };
}

describe("kafkajs's log, as Sluice logs it", () => {
  // Regression: `npm run demo` printed an error-level line for a transactional send kafkajs
  // retried and that then succeeded (CONCURRENT_TRANSACTIONS, right after the previous commit).
  it('logs a send kafkajs retries for a retriable error at debug, and one it cannot retry at error', () => {
    const { lines, log, entry } = bridge();
    const concurrent =
      'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing';
    log(entry(logLevel.ERROR, `Failed to send messages: ${concurrent}`, { retryCount: 0, retryTime: 308 }));
    log(entry(logLevel.ERROR, 'Response EndTxn(key: 26, version: 1)', { error: concurrent }));
    log(entry(logLevel.ERROR, 'Failed to send messages: Not authorized to access topics', { retryCount: 0 }));
    log(entry(logLevel.ERROR, `Failed to send messages: ${concurrent}`)); // not from the retrier
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [20, `kafka: Failed to send messages: ${concurrent}`],
      [20, 'kafka: Response EndTxn(key: 26, version: 1)'],
      [50, 'kafka: Failed to send messages: Not authorized to access topics'],
      [50, `kafka: Failed to send messages: ${concurrent}`],
    ]);
  });
});
