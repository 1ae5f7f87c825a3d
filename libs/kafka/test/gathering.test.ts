import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { createKafka, GatheringSender } from '../src/index.js';

describe('GatheringSender against the real broker', () => {
  it('writes records sent together in a few produce requests, a record too big for them alone, and loses none', async () => {
    const { kafkaBrokers } = stackSettings();
    const kafka = createKafka({ brokers: kafkaBrokers, clientId: uniqueName('gather') });
    const topics = [uniqueName('gather-a'), uniqueName('gather-b')];
    await kafka.ensureTopics(topics.map((topic) => ({ topic, partitions: 3 })));
    const producer = kafka.producer();
    const produces: number[] = [];
    producer.on(producer.events.REQUEST, (e) => {
      if (e.payload.apiName === 'Produce') produces.push(e.payload.correlationId);
    });
    await producer.connect();
    try {
      const sender = new GatheringSender(producer, { running: () => true, what: 'test record' });
      // 300 calls' outcomes to two topics at once, and one of 600 KiB (over a request's 512 KiB).
      const big = Buffer.alloc(600 * 1024, 'x');
      await Promise.all([
        ...Array.from({ length: 300 }, (_, i) => sender.send(topics[i % 2]!, { key: `k${i}`, value: `v${i}` })),
        sender.send(topics[0]!, { key: 'big', value: big }),
      ]);
      // One request per flush, not one per record: the 300 small ones in one or two (a flush may
      // fall between them), the big one in a request of its own.
      expect(produces.length).toBeGreaterThanOrEqual(2);
      expect(produces.length).toBeLessThanOrEqual(3);
      const admin = kafka.admin();
      await admin.connect();
      try {
        const counts = await Promise.all(
          topics.map(async (t) => (await admin.fetchTopicOffsets(t)).reduce((n, o) => n + Number(o.high), 0)),
        );
        expect(counts).toEqual([151, 150]);
      } finally {
        await admin.disconnect();
      }
    } finally {
      await producer.disconnect();
      await kafka.deleteTopics(topics);
    }
  }, 60_000);
});
