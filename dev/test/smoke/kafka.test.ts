import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('Kafka (real broker, KRaft)', () => {
  const kafka = new Kafka({ clientId: 'sluice-smoke', brokers: stackSettings().kafkaBrokers, logLevel: logLevel.WARN });
  const admin = kafka.admin();
  const topic = uniqueName('smoke-kafka');
  const groupId = uniqueName('smoke-group');

  beforeAll(async () => {
    await admin.connect();
  });
  afterAll(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('creates a topic, produces, consumes in a group and commits offsets that the admin API reads back', async () => {
    expect(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })).toBe(true);
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(meta.topics[0]?.partitions).toHaveLength(2);

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 4}`, value: `v${i}` }));
    await producer.send({ topic, messages: sent });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: string[] = [];
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        received.push(message.value?.toString() ?? '');
        await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
      },
    });
    await waitFor('all 20 messages', () => (received.length >= 20 ? true : undefined), { timeoutMs: 30_000 });
    await consumer.disconnect();

    expect(received.sort()).toEqual(sent.map((m) => m.value).sort());
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    const total = committed[0]?.partitions.reduce((sum, p) => sum + Number(p.offset), 0);
    expect(total).toBe(20);
    const ends = await admin.fetchTopicOffsets(topic);
    for (const p of committed[0]?.partitions ?? []) {
      expect(p.offset).toBe(ends.find((e) => e.partition === p.partition)?.offset);
    }
  });

  it('does not create topics on first use (automatic creation is off)', async () => {
    const producer = kafka.producer({ allowAutoTopicCreation: true, retry: { retries: 1 } });
    await producer.connect();
    const missing = uniqueName('smoke-missing');
    await expect(producer.send({ topic: missing, messages: [{ value: 'x' }], timeout: 2_000 })).rejects.toThrow();
    await producer.disconnect();
    expect(await admin.listTopics()).not.toContain(missing);
  });
});
