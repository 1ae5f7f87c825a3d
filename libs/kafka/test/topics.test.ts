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
