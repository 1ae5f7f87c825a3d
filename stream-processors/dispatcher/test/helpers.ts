import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { SluiceKafka } from '@sluice/kafka';
import type { ProviderSimServer } from '@sluice/provider-sim';
import type { PromptOutcome, PromptRequest, SchemaCodecs } from '@sluice/schemas';
import { uniqueName, waitFor } from '@sluice/testing';

/** A job of `n` prompts on a lane of its own, its results topic, and its view in Redis. */
export async function seedLaneJob(
  { kafka, codecs, redis }: { kafka: SluiceKafka; codecs: SchemaCodecs; redis: Redis },
  n: number,
  status = 'sealed',
  lane?: { provider: string; partition: number },
) {
  const provider = lane?.provider ?? `d${randomBytes(4).toString('hex')}`;
  const jobId = `job_${randomBytes(6).toString('hex')}`;
  await kafka.ensureTopics([
    { topic: `sluice.requests.${provider}`, partitions: 4 },
    { topic: `sluice.results.${jobId}`, partitions: 1 },
  ]);
  // The fields of the API's view the dispatcher checks lane records against.
  await redis.set(
    `sluice:job:${jobId}`,
    JSON.stringify({ jobId, status, tenant: 'alice', model: 'gpt-4o-mini', total: status === 'open' ? null : n }),
  );
  const producer = kafka.producer();
  await producer.connect();
  const messages = Array.from({ length: n }, (_, i) => {
    const request: PromptRequest = {
      jobId,
      promptId: `${jobId}:${i}`,
      rowIndex: i,
      tenant: 'alice',
      provider,
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `Classify headline ${i}.` }],
      parameters: {
        temperature: 0,
        topP: null,
        maxTokens: 16,
        responseFormat: null,
        stop: null,
        seed: null,
        extra: null,
      },
      attempt: 0,
      customId: `c${i}`,
      priority: 0,
      submittedAt: Date.now(),
      source: 'http',
    };
    return { key: jobId, partition: lane?.partition ?? i % 4, value: codecs.promptRequest.encodeSync(request) };
  });
  for (let i = 0; i < messages.length; i += 500)
    await producer.send({ topic: `sluice.requests.${provider}`, messages: messages.slice(i, i + 500) });
  await producer.disconnect();
  return { provider, jobId };
}

/** Reads a job's results topic until `expectedUnique` prompts have an outcome, and a second more. */
export async function collectOutcomes(
  { kafka, codecs, sim }: { kafka: SluiceKafka; codecs: SchemaCodecs; sim?: ProviderSimServer },
  jobId: string,
  expectedUnique: number,
  timeoutMs: number,
) {
  const consumer = kafka.consumer({ groupId: uniqueName('results') });
  const all: PromptOutcome[] = [];
  const unique = new Set<string>();
  await consumer.connect();
  await consumer.subscribe({ topic: `sluice.results.${jobId}`, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const o = await codecs.promptOutcome.decode(message.value!);
      all.push(o);
      unique.add(o.promptId);
    },
  });
  try {
    let last = 0;
    await waitFor(
      `${expectedUnique} outcomes of ${jobId}`,
      () => {
        if (sim && process.env['DISPATCH_DEBUG'] && Date.now() - last > 5_000) {
          last = Date.now();
          const st = sim.sim.ledger
            .stats()
            .map((k) => `${k.key}:${JSON.stringify(k.byReason)}`)
            .join(' ');
          console.log(
            `progress ${unique.size}/${expectedUnique} (${all.length} records) ledger ${sim.sim.ledger.size} ${st}`,
          );
        }
        return unique.size >= expectedUnique ? true : undefined;
      },
      { timeoutMs, intervalMs: 200 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${unique.size} of ${expectedUnique} arrived`);
    });
    await new Promise((r) => setTimeout(r, 1_000)); // late duplicates, if any, arrive now
  } finally {
    await consumer.disconnect();
  }
  return { all, unique };
}
