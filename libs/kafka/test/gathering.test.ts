import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { createKafka, GatheringSender, TopicMissingError } from '../src/index.js';

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

  // Regression: an outcome for a results topic that does not exist was retried forever, and every
  // record gathered with it waited too.
  it('refuses the records of a topic that does not exist and writes the ones gathered with them', async () => {
    const { kafkaBrokers } = stackSettings();
    const kafka = createKafka({ brokers: kafkaBrokers, clientId: uniqueName('gather') });
    const here = uniqueName('gather-here');
    const gone = uniqueName('gather-gone');
    await kafka.ensureTopics([{ topic: here, partitions: 1 }]);
    const producer = kafka.producer();
    await producer.connect();
    try {
      const sender = new GatheringSender(producer, {
        running: () => true,
        what: 'test record',
        topicExists: (t) => kafka.topicExists(t, { fresh: true }),
      });
      const [a, b, c] = await Promise.allSettled([
        sender.send(here, { value: 'a' }),
        sender.send(gone, { value: 'b' }),
        sender.send(here, { value: 'c' }),
      ]);
      expect(a.status).toBe('fulfilled');
      expect(c.status).toBe('fulfilled');
      expect(b.status === 'rejected' && b.reason).toBeInstanceOf(TopicMissingError);
      const admin = kafka.admin();
      await admin.connect();
      try {
        expect(Number((await admin.fetchTopicOffsets(here))[0]!.high)).toBe(2);
      } finally {
        await admin.disconnect();
      }
    } finally {
      await producer.disconnect();
      await kafka.deleteTopics([here]);
    }
  }, 60_000);
});
