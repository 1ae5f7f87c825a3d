import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../src/index.js';

describe('ensureTopics against the real broker', () => {
  it('lets every one of several replicas starting at once produce to the topics right away', async () => {
    const { kafkaBrokers } = stackSettings();
    const topics = Array.from({ length: 3 }, () => uniqueName('ensure'));
    // Four roles starting together on a fresh cluster: each lists, finds the topics missing, and
    // creates them; all but one are told they exist already. Each then produces at once.
    const replicas = Array.from({ length: 4 }, (_, i) =>
      createKafka({ brokers: kafkaBrokers, clientId: `ensure-${i}` }),
    );
    const sent = await Promise.all(
      replicas.map(async (kafka, i) => {
        await kafka.ensureTopics(topics.map((topic) => ({ topic, partitions: 6 })));
        // What a role does next: read the topics' offsets (the sink, the dispatcher's lag), produce.
        const admin = kafka.admin();
        await admin.connect();
        try {
          for (const topic of topics) expect(await admin.fetchTopicOffsets(topic)).toHaveLength(6);
        } finally {
          await admin.disconnect();
        }
        const producer = kafka.producer();
        await producer.connect();
        try {
          for (const topic of topics)
            await producer.send({
              topic,
              messages: Array.from({ length: 6 }, (_, partition) => ({ partition, value: `r${i}` })),
            });
          return 6 * topics.length;
        } finally {
          await producer.disconnect();
        }
      }),
    );
    expect(sent).toEqual([18, 18, 18, 18]);
    const admin = replicas[0]!.admin();
    await admin.connect();
    try {
      for (const topic of topics) {
        const offsets = await admin.fetchTopicOffsets(topic);
        expect(offsets.map((o) => Number(o.high))).toEqual([4, 4, 4, 4, 4, 4]);
      }
    } finally {
      await replicas[0]!.deleteTopics(topics);
      await admin.disconnect();
    }
  }, 60_000);
});

describe('topics that come and go (real broker)', () => {
  // Regression: once a topic a producer had written to was deleted (a results topic after its
  // retention), kafkajs failed every metadata refresh, and so every send to every other topic,
  // with "This server does not host this topic-partition", until the process restarted.
  it('a producer goes on writing to other topics after one it wrote to is deleted', async () => {
    const { kafkaBrokers } = stackSettings();
    const kafka = createKafka({ brokers: kafkaBrokers, clientId: uniqueName('deleted') });
    const [gone, kept, later] = [uniqueName('gone'), uniqueName('kept'), uniqueName('later')];
    await kafka.ensureTopics([gone, kept].map((topic) => ({ topic, partitions: 1 })));
    const producer = kafka.producer();
    await producer.connect();
    try {
      await producer.send({ topic: gone, messages: [{ value: 'a' }] });
      await producer.send({ topic: kept, messages: [{ value: 'b' }] });
      await kafka.deleteTopics([gone]);
      // A new topic makes the producer refresh its metadata for every topic it knows.
      await kafka.ensureTopics([{ topic: later, partitions: 1 }]);
      await producer.send({ topic: later, messages: [{ value: 'c' }] });
      await producer.send({ topic: kept, messages: [{ value: 'd' }] });
      const admin = kafka.admin();
      await admin.connect();
      try {
        expect((await admin.fetchTopicOffsets(kept)).map((o) => o.high)).toEqual(['2']);
        expect((await admin.fetchTopicOffsets(later)).map((o) => o.high)).toEqual(['1']);
      } finally {
        await admin.disconnect();
      }
    } finally {
      await producer.disconnect();
      await kafka.deleteTopics([kept, later]);
    }
  }, 60_000);
});
