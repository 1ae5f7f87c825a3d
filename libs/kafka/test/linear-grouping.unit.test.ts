import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import '../src/index.js';
import { groupMessagesPerPartition } from '../src/linear-grouping.js';

const require = createRequire(import.meta.url);

describe('linear grouping of messages per partition (kafkajs 2.2.4 is quadratic)', () => {
  it('is the module kafkajs loads', () => {
    expect(require('kafkajs/src/producer/groupMessagesPerPartition')).toBe(groupMessagesPerPartition);
  });

  it('keeps each partition in send order and leaves no partition out', () => {
    const messages = Array.from({ length: 10 }, (_, i) => ({ value: `m${i}`, partition: i % 3 }));
    const grouped = groupMessagesPerPartition({
      topic: 't',
      partitionMetadata: [{}, {}, {}],
      messages,
      partitioner: ({ message }) => (message as { partition: number }).partition,
    });
    expect(Object.keys(grouped).sort()).toEqual(['0', '1', '2']);
    expect((grouped[0] as Array<{ value: string }>).map((m) => m.value)).toEqual(['m0', 'm3', 'm6', 'm9']);
    expect(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 })).toEqual(
      {},
    );
  });
});
