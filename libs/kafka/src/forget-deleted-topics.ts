/**
 * kafkajs 2.2.4 keeps every topic a client ever produced to (or fetched metadata for) in its
 * cluster's target topics, and asks for their metadata at each refresh. Once one of them is
 * deleted (a results topic after its retention, by an operator), every refresh fails with
 * UNKNOWN_TOPIC_OR_PARTITION ("This server does not host this topic-partition"), and with it every
 * send to every other topic, until the process restarts (kafkajs issues #1146, #1622). This module,
 * evaluated before kafkajs, wraps the cluster's metadata refreshes: on that error it asks the
 * broker which topics exist, drops the target topics that do not, and refreshes again.
 */
import { createRequire } from 'node:module';

interface ClusterLike {
  targetTopics: Set<string>;
  brokerPool: {
    withBroker<T>(
      fn: (o: {
        broker: { metadata(topics: string[]): Promise<{ topicMetadata: Array<{ topic: string }> }> };
      }) => Promise<T>,
    ): Promise<T>;
  };
}
type Refresh = (this: ClusterLike) => Promise<void>;

const require = createRequire(import.meta.url);
const Cluster = require('kafkajs/src/cluster') as { prototype: Record<string, unknown> };

async function forgetDeleted(cluster: ClusterLike): Promise<boolean> {
  // Metadata for no topic in particular lists every topic the broker has.
  const all = await cluster.brokerPool.withBroker(({ broker }) => broker.metadata([]));
  const existing = new Set(all.topicMetadata.map((t) => t.topic));
  let forgot = false;
  for (const topic of [...cluster.targetTopics]) {
    if (!existing.has(topic)) {
      cluster.targetTopics.delete(topic);
      forgot = true;
    }
  }
  return forgot;
}

for (const name of ['refreshMetadata', 'refreshMetadataIfNecessary'] as const) {
  const original = Cluster.prototype[name] as Refresh;
  if ((original as { sluiceWrapped?: boolean }).sluiceWrapped) continue;
  const wrapped: Refresh = async function (this: ClusterLike) {
    try {
      return await original.call(this);
    } catch (err) {
      if ((err as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw err;
      if (!(await forgetDeleted(this).catch(() => false))) throw err;
      return await original.call(this);
    }
  };
  (wrapped as { sluiceWrapped?: boolean }).sluiceWrapped = true;
  Cluster.prototype[name] = wrapped;
}
