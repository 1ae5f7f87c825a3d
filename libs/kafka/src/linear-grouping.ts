/**
 * kafkajs 2.2.4 groups a send's messages per partition by copying each partition's array for
 * every message (`[...current, message]`), which is quadratic in the messages per partition: an
 * upload chunk of 5,000 rows on one partition costs 12.5 million copies and the garbage with them.
 * This module, evaluated before kafkajs, puts a linear version with the same result (messages in
 * order, keyed by partition) in kafkajs's place in the CommonJS module cache.
 */
import { createRequire } from 'node:module';

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

export function groupMessagesPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}): Record<number, unknown[]> {
  if (partitionMetadata.length === 0) return {};
  const result: Record<number, unknown[]> = {};
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

const require = createRequire(import.meta.url);
const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition');
if (!require.cache[path]) {
  // Load the original once so the cache entry is a real module, then swap its exports.
  require(path);
}
const cached = require.cache[path];
if (cached) cached.exports = groupMessagesPerPartition;
