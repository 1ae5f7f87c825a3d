import { randomBytes } from 'node:crypto';
import { jobsTopic, type Logger, type SluiceKafka } from '@sluice/kafka';
import type { Job, SchemaCodecs } from '@sluice/schemas';

/** The latest committed state of every job (or of one) in sluice.jobs, read to its end. */
export async function readJobsTopic(
  { kafka, codecs, log }: { kafka: SluiceKafka; codecs: SchemaCodecs; log: Logger },
  only?: string,
): Promise<Map<string, Job>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(jobsTopic);
  await admin.disconnect();
  const remaining = new Map(ends.filter((e) => e.high !== e.low).map((e) => [e.partition, Number(e.high)]));
  const latest = new Map<string, Job>();
  if (remaining.size === 0) return latest;
  // A group of its own for one read, which commits nothing and is deleted after it: such groups
  // piled up in the group list (one per rebuild and per resumed upload, each showing lag).
  const groupId = `sluice-ingest-read-${randomBytes(4).toString('hex')}`;
  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  await consumer.subscribe({ topic: jobsTopic, fromBeginning: true });
  // Until the group is joined nothing can arrive: the quiet period starts then.
  let lastProgress = Date.now() + 60_000;
  consumer.on(consumer.events.GROUP_JOIN, () => (lastProgress = Math.min(lastProgress, Date.now())));
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const message of batch.messages) {
        if (!message.value || (only !== undefined && message.key?.toString() !== only)) continue;
        const event = await codecs.jobEvent.decode(message.value);
        latest.set(event.job.jobId, event.job);
      }
      // lastOffset() counts transaction markers, which are never delivered as messages.
      const end = remaining.get(batch.partition);
      if (end !== undefined && Number(batch.lastOffset()) + 1 >= end) remaining.delete(batch.partition);
      lastProgress = Date.now();
    },
  });
  // Done when every partition reached its end, or, when a partition ends with a transaction
  // marker that no batch reports, when nothing more has come for a while.
  while (remaining.size > 0 && Date.now() - lastProgress < 2_000) await new Promise((r) => setTimeout(r, 50));
  await consumer.disconnect();
  const cleanup = kafka.admin();
  try {
    await cleanup.connect();
    await cleanup.deleteGroups([groupId]);
  } catch (err) {
    log.debug({ err, groupId }, 'read group not deleted (Kafka drops an empty group with no offsets itself)');
  } finally {
    await cleanup.disconnect().catch(() => undefined);
  }
  return latest;
}
