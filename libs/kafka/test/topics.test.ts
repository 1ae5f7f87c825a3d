import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import type { ConfigResourceTypes } from 'kafkajs';
import { createKafka, KafkaConfigError, topicReplication } from '../src/index.js';

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

  it('creates topics with the configured min.insync.replicas, and says what to set when the replicas cannot be had', async () => {
    const { kafkaBrokers } = stackSettings();
    const topic = uniqueName('replicas');
    const kafka = createKafka({ brokers: kafkaBrokers, clientId: uniqueName('replicas'), replicationFactor: 1 });
    await kafka.ensureTopics([{ topic, partitions: 1 }]);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const r = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: 2 as ConfigResourceTypes, name: topic, configNames: ['min.insync.replicas'] }],
      });
      expect(r.resources[0]!.configEntries[0]!.configValue).toBe('1');
    } finally {
      await admin.disconnect();
    }
    // Three replicas on the local single broker: refused, with the setting to change.
    const three = createKafka({ brokers: kafkaBrokers, clientId: uniqueName('replicas'), replicationFactor: 3 });
    const err = await three.ensureTopics([{ topic: uniqueName('replicas'), partitions: 1 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KafkaConfigError);
    expect((err as Error).message).toMatch(/with 3 replicas: .*SLUICE_TOPIC_REPLICATION_FACTOR/);
    // A minimum no write could meet is refused before anything is created.
    expect(() =>
      topicReplication({}, { SLUICE_TOPIC_REPLICATION_FACTOR: '3', SLUICE_TOPIC_MIN_INSYNC_REPLICAS: '4' }),
    ).toThrow(/no write could ever be acknowledged/);
    expect(topicReplication({}, { SLUICE_TOPIC_REPLICATION_FACTOR: '3' })).toEqual({
      replicationFactor: 3,
      minInsyncReplicas: 2,
    });
    expect(topicReplication({}, {})).toEqual({ replicationFactor: 1, minInsyncReplicas: 1 });
  }, 60_000);
});
