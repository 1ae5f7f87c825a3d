import { KafkaConfigError } from './types.js';

/** The replication of the topics Sluice creates, from the options or the environment. */
export function topicReplication(
  o: { replicationFactor?: number; minInsyncReplicas?: number },
  env: NodeJS.ProcessEnv = process.env,
): { replicationFactor: number; minInsyncReplicas: number } {
  const int = (name: string, v: number | string | undefined, fallback: number) => {
    if (v === undefined || v === '') return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new KafkaConfigError(`${name}=${v}: give a whole number of 1 or more`);
    return n;
  };
  const replicationFactor = int(
    'SLUICE_TOPIC_REPLICATION_FACTOR',
    o.replicationFactor ?? env['SLUICE_TOPIC_REPLICATION_FACTOR'],
    1,
  );
  const minInsyncReplicas = int(
    'SLUICE_TOPIC_MIN_INSYNC_REPLICAS',
    o.minInsyncReplicas ?? env['SLUICE_TOPIC_MIN_INSYNC_REPLICAS'],
    Math.max(1, replicationFactor - 1),
  );
  if (minInsyncReplicas > replicationFactor)
    throw new KafkaConfigError(
      `SLUICE_TOPIC_MIN_INSYNC_REPLICAS=${minInsyncReplicas} is more than SLUICE_TOPIC_REPLICATION_FACTOR=` +
        `${replicationFactor}: no write could ever be acknowledged (3 and 2 are usual on a cluster)`,
    );
  return { replicationFactor, minInsyncReplicas };
}
