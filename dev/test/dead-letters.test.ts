import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createKafka, DeadLetters } from '@sluice/kafka';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { formatLetters, readDeadLetters, redrive } from '../sluice/dead-letters.js';

describe('sluice dead-letters (real Kafka and Redis)', () => {
  it('lists dead letters by job without their values, and re-drives them to their target once', async () => {
    const s = stackSettings();
    const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('dlcli') });
    const redis = new Redis(s.redisUrl);
    const jobId = `job_${randomBytes(6).toString('hex')}`;
    const target = `sluice.results.${jobId}`;
    const gone = `sluice.results.gone${randomBytes(4).toString('hex')}`;
    await kafka.ensureTopics([
      { topic: 'sluice.dead-letter', partitions: 3 },
      { topic: target, partitions: 1 },
    ]);
    const producer = kafka.producer();
    await producer.connect();
    try {
      const letters = new DeadLetters(producer, {
        stage: 'dispatcher',
        running: () => true,
        log: pino({ level: 'silent' }),
      });
      await letters.send({
        reason: 'TOPIC_MISSING',
        message: `${target} does not exist`,
        target,
        source: { topic: 'sluice.requests.x', partition: 2, offset: 41 },
        key: jobId,
        value: Buffer.from('secret prompt text'),
        headers: { 'sluice-attempts': '[]' },
      });
      await letters.send({
        reason: 'TOPIC_MISSING',
        message: `${gone} does not exist`,
        target: gone,
        key: jobId,
        value: Buffer.from('b'),
      });

      const found = await readDeadLetters(kafka, { jobId });
      expect(found.map((l) => [l.reason, l.target, l.source, l.stage])).toEqual([
        ['TOPIC_MISSING', target, 'sluice.requests.x/2/41', 'dispatcher'],
        ['TOPIC_MISSING', gone, null, 'dispatcher'],
      ]);
      const text = formatLetters(found);
      expect(text).toContain('2 dead letters (TOPIC_MISSING 2)');
      expect(text).not.toContain('secret prompt text');

      const first = await redrive(kafka, redis, found);
      expect(first).toEqual({
        redriven: 1,
        skipped: 0,
        refused: [
          {
            partition: found[1]!.partition,
            offset: found[1]!.offset,
            target: gone,
            why: `topic ${gone} does not exist`,
          },
        ],
      });
      // The record reached its target as it was, with its own headers and none of the dead letter's.
      const consumer = kafka.consumer({ groupId: uniqueName('dlcli-reader') });
      const got: Array<{ value: string; headers: string[] }> = [];
      await consumer.connect();
      await consumer.subscribe({ topic: target, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) =>
          void got.push({ value: message.value!.toString(), headers: Object.keys(message.headers ?? {}).sort() }),
      });
      await waitFor('the re-driven record', () => (got.length > 0 ? true : undefined), { timeoutMs: 30_000 });
      await consumer.disconnect();
      expect(got).toEqual([{ value: 'secret prompt text', headers: ['sluice-attempts'] }]);
      // A second re-drive sends nothing again.
      expect((await redrive(kafka, redis, await readDeadLetters(kafka, { jobId }))).skipped).toBe(1);
    } finally {
      await producer.disconnect();
      redis.disconnect();
    }
  }, 120_000);
});
