import { randomBytes } from 'node:crypto';
import { PubSub, type Message } from '@google-cloud/pubsub';
import type { SluiceKafka } from '@sluice/kafka';
import type { ObjectStore } from '@sluice/object-store';
import type { Job, JobEvent, PromptOutcome, SchemaCodecs } from '@sluice/schemas';
import { uniqueName } from '@sluice/testing';

export function makeJob(over: Partial<Job> = {}): Job {
  const jobId = `job_${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
  const now = Date.now();
  return {
    jobId,
    tenant: 'alice',
    status: 'sealed',
    provider: 'openai',
    model: 'gpt-4o-mini',
    priority: 0,
    source: 'http',
    parameters: '{}',
    promptTemplate: null,
    metadata: { project: 'sink-test' },
    notifications: '{}',
    idempotencyKey: null,
    laneTopic: 'sluice.requests.openai',
    partitions: [0],
    resultsTopic: `sluice.results.${jobId}`,
    accepted: 0,
    invalid: 0,
    total: null,
    createdAt: now,
    updatedAt: now,
    finalizedAt: null,
    manifestUri: null,
    inputDigest: null,
    statusReason: null,
    ...over,
  };
}

export function outcome(job: Job, row: number, kind: 'ok' | 'failed' | 'invalid' = 'ok'): PromptOutcome {
  const base = {
    jobId: job.jobId,
    promptId: `${job.jobId}:${row}`,
    rowIndex: row,
    tenant: job.tenant,
    customId: `c${row}`,
    attemptHistory: [],
    completedAt: Date.now(),
  };
  if (kind === 'ok') {
    return {
      ...base,
      status: 'succeeded',
      result: {
        model: 'gpt-4o-mini',
        text: `answer ${row}`,
        finishReason: 'stop',
        usage: { promptTokens: 10, completionTokens: 5, totalTokens: 15 },
        latencyMs: 12,
        body: JSON.stringify({ id: `chatcmpl-${row}`, choices: [{ message: { content: `answer ${row}` } }] }),
      },
      error: null,
      attempts: 1,
    };
  }
  return {
    ...base,
    status: 'failed',
    result: null,
    error:
      kind === 'invalid'
        ? { code: 'INPUT_INVALID_JSON', message: 'line is not JSON', lineNumber: row + 1 }
        : { code: 'PROVIDER_REJECTED', message: 'openai: 400 bad request', lineNumber: null },
    attempts: kind === 'invalid' ? 0 : 1,
  };
}

export async function publishJob(kafka: SluiceKafka, codecs: SchemaCodecs, job: Job, type = job.status) {
  const producer = kafka.producer();
  await producer.connect();
  const event: JobEvent = { type, at: Date.now(), job };
  await producer.send({
    topic: 'sluice.jobs',
    messages: [{ key: job.jobId, value: codecs.jobEvent.encodeSync(event) }],
  });
  await producer.disconnect();
}

/** Produces outcomes to the job's results topic; over `partitions` partitions by row when given. */
export async function produceOutcomes(
  kafka: SluiceKafka,
  codecs: SchemaCodecs,
  job: Job,
  outcomes: PromptOutcome[],
  partitions?: number,
) {
  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < outcomes.length; i += 500) {
    await producer.send({
      topic: job.resultsTopic,
      messages: outcomes.slice(i, i + 500).map((o) => ({
        key: job.jobId,
        partition: partitions ? o.rowIndex % partitions : undefined,
        value: codecs.promptOutcome.encodeSync(o),
      })),
    });
  }
  await producer.disconnect();
}

/** Every line of every results / errors file the manifest lists, parsed. */
export async function readOutputs(store: ObjectStore, jobId: string, prefix = '') {
  const manifestRaw = await store.get(`${prefix}${jobId}/manifest.json`);
  if (!manifestRaw) return undefined;
  const manifest = JSON.parse(manifestRaw.toString()) as {
    status: string;
    counts: Record<string, number>;
    outputs: { results: Array<{ name: string; sha256: string }>; errors: Array<{ name: string }> };
  } & Record<string, unknown>;
  const lines = async (files: Array<{ name: string }>) => {
    const out: Array<Record<string, unknown>> = [];
    for (const f of files) {
      const text = (await store.get(f.name))!.toString();
      for (const l of text.split('\n')) if (l) out.push(JSON.parse(l) as Record<string, unknown>);
    }
    return out;
  };
  return {
    manifest,
    results: await lines(manifest.outputs.results),
    errors: await lines(manifest.outputs.errors),
    objects: await store.list(`${prefix}${jobId}/`),
  };
}

/** A subscription to the announcements topic, collecting what arrives. */
export async function subscribe(projectId: string, apiEndpoint: string, topicName: string) {
  const pubsub = new PubSub({ projectId, apiEndpoint, emulatorMode: true });
  const topic = pubsub.topic(topicName);
  const [exists] = await topic.exists();
  if (!exists) await pubsub.createTopic(topicName).catch(() => undefined);
  const [sub] = await topic.createSubscription(uniqueName('sub'));
  const messages: Message[] = [];
  sub.on('message', (m: Message) => {
    messages.push(m);
    m.ack();
  });
  return {
    messages,
    close: async () => {
      await sub.close();
      await sub.delete().catch(() => undefined);
      await pubsub.close();
    },
  };
}
