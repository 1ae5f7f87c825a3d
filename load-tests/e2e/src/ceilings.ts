/**
 * The raw ceilings bench:e2e measures in the same run as the pipeline, to say how far from this
 * machine's limits the pipeline stands: plain `fetch` against the provider simulator (no SDK, no
 * rate limiter, no Kafka), and kafkajs producing and consuming the same prompt bytes (no Avro, no
 * transactions, no processing).
 */
import { pino } from 'pino';
import { createKafka } from '@sluice/kafka';

export interface Ceiling {
  records: number;
  megabytes: number;
  seconds: number;
  perSecond: number;
  megabytesPerSecond: number;
}

const ceiling = (records: number, bytes: number, ms: number): Ceiling => ({
  records,
  megabytes: Number((bytes / 1024 / 1024).toFixed(1)),
  seconds: Number((ms / 1_000).toFixed(2)),
  perSecond: Math.round((records * 1_000) / ms),
  megabytesPerSecond: Number((bytes / 1024 / 1024 / (ms / 1_000)).toFixed(1)),
});

/** Chat completions by plain fetch, `concurrency` in flight, each prompt once. */
export async function fetchCeiling(
  baseUrl: string,
  apiKey: string,
  model: string,
  prompts: Array<{ prompt: string; maxTokens: number }>,
  concurrency = 256,
): Promise<Ceiling> {
  let next = 0;
  let bytes = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < prompts.length) {
      const p = prompts[next++]!;
      const body = JSON.stringify({
        model,
        messages: [{ role: 'user', content: p.prompt }],
        max_tokens: p.maxTokens,
      });
      bytes += body.length;
      const res = await fetch(`${baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body,
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`fetch ceiling: ${res.status} ${text.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return ceiling(prompts.length, bytes, performance.now() - t0);
}

/**
 * kafkajs producing the prompts' bytes to a topic of `partitions` partitions (batches of at most
 * 1 MB, acks from all replicas, as the ingest API sends), then one consumer reading them all.
 */
export async function kafkaCeiling(
  brokers: string[],
  topic: string,
  partitions: number,
  values: Buffer[],
): Promise<{ produce: Ceiling; consume: Ceiling }> {
  const kafka = createKafka({ brokers, clientId: `${topic}-bench`, logger: pino({ level: 'warn' }) });
  await kafka.ensureTopics([{ topic, partitions }]);
  const total = values.reduce((n, v) => n + v.length, 0);
  const producer = kafka.producer();
  await producer.connect();
  const t0 = performance.now();
  const inFlight: Array<Promise<unknown>> = [];
  let batch: Array<{ value: Buffer; partition: number }> = [];
  let batchBytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    inFlight.push(producer.send({ topic, acks: -1, messages: batch }));
    batch = [];
    batchBytes = 0;
    if (inFlight.length >= 8) await Promise.all(inFlight.splice(0));
  };
  for (let i = 0; i < values.length; i++) {
    batch.push({ value: values[i]!, partition: i % partitions });
    batchBytes += values[i]!.length;
    if (batchBytes >= 900 * 1024 || batch.length >= 1_000) await flush();
  }
  await flush();
  await Promise.all(inFlight);
  const produce = ceiling(values.length, total, performance.now() - t0);
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let seenBytes = 0;
  let t1 = 0; // from the first batch: the group's join is no part of reading
  let done: () => void = () => undefined;
  const all = new Promise<void>((ok) => (done = ok));
  await consumer.run({
    eachBatch: async ({ batch }) => {
      if (t1 === 0) t1 = performance.now();
      for (const m of batch.messages) seenBytes += m.value?.length ?? 0;
      seen += batch.messages.length;
      if (seen >= values.length) done();
    },
  });
  await all;
  const consume = ceiling(seen, seenBytes, performance.now() - t1);
  await consumer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.deleteGroups([`${topic}-reader`]).catch(() => undefined);
  await admin.disconnect();
  return { produce, consume };
}
