import type { Message, Producer, ProducerRecord } from 'kafkajs';
import { TopicMissingError, unknownTopicError, type Logger } from './types.js';

/** How long one send may wait for Kafka before it is sent again: twice the request timeout. */
const sendAttemptMs = 60_000;

/** What a record costs in a batch beyond its key and value (Kafka's v2 record and batch headers). */
export const recordOverheadBytes = 80;

/** The bytes a message takes in a record batch, near enough to keep batches under a limit. */
export function messageBytes(m: Message): number {
  const size = (v: Message['value'] | Message['key']) =>
    v === null || v === undefined ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length;
  let headers = 0;
  for (const [k, v] of Object.entries(m.headers ?? {}))
    headers += Buffer.byteLength(k) + (Array.isArray(v) ? v.reduce((a, x) => a + size(x), 0) : size(v as Buffer));
  return size(m.key) + size(m.value) + headers + recordOverheadBytes;
}

/**
 * Splits messages into sends whose bytes stay under `maxBytes` in all (so under it in every
 * partition's batch too, whatever partitions they go to). A message over it alone gets a send of
 * its own: the broker's refusal is then that message's, not its neighbours'.
 */
export function splitByBytes<M extends Message>(messages: M[], maxBytes: number): M[][] {
  const out: M[][] = [];
  let current: M[] = [];
  let bytes = 0;
  for (const m of messages) {
    const b = messageBytes(m);
    if (current.length > 0 && bytes + b > maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += b;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * Sends `record` until it is written, with backoff (0.25 s doubling to 5 s), for as long as
 * `running()` says so. kafkajs gives up on a send after its own few retries (a reset connection:
 * "Closed connection", "write after end"); a result already paid for must not be dropped then.
 * Throws the last error once `running()` is false.
 */
export async function sendUntilWritten(
  producer: Producer,
  record: ProducerRecord,
  o: { running: () => boolean; log?: Logger; what: string; attemptMs?: number },
): Promise<void> {
  return retryUntilWritten(() => producer.send(record), record.topic, o);
}

async function retryUntilWritten(
  send: () => Promise<unknown>,
  topic: string,
  o: {
    running: () => boolean;
    log?: Logger;
    what: string;
    attemptMs?: number;
    /** Asked after each failure: true ends the retries with that failure. */
    stopOn?: (err: unknown) => Promise<boolean>;
  },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let timer: NodeJS.Timeout | undefined;
    try {
      // kafkajs bounds each request, but a send can still wait on a connection that never answers
      // nor fails; after `attemptMs` it is sent again (readers deduplicate a late first copy).
      const ms = o.attemptMs ?? sendAttemptMs;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Kafka within ${ms} ms`)), ms);
      });
      await Promise.race([send(), deadline]);
      return;
    } catch (err) {
      if (!o.running()) throw err;
      if (o.stopOn && (await o.stopOn(err).catch(() => false))) throw err;
      o.log?.warn({ err, topic, attempt }, `${o.what} not written yet; retrying`);
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** (attempt - 1))));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Bytes of records one gathered request carries at most: under any topic's limit of at least 1 MiB. */
const gatheredBytes = 512 * 1024;

/**
 * Gathers the records sent within `lingerMs` of each other into one produce request, each written
 * until it is (as sendUntilWritten). kafkajs makes every send() a request of its own: one a call
 * at a thousand calls a second was a fifth of the dispatcher's CPU (encoding, a socket write and
 * an answer each). A request carries at most 512 KiB (a record larger goes alone) and 1,000
 * records; the promise of each record settles when its request is written.
 */
export class GatheringSender {
  private pending: Array<{ topic: string; message: Message; bytes: number; done: (err?: unknown) => void }> = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly producer: Producer,
    private readonly o: {
      running: () => boolean;
      log?: Logger;
      what: string;
      lingerMs?: number;
      /** A request with no answer for this long is sent again. @default 60000 */
      attemptMs?: number;
      /**
       * Asked, after a send fails on an unknown topic, whether each topic of the request exists:
       * the records of one that does not are refused with TopicMissingError and the rest are sent
       * again. Without it such a send is retried like any other (a topic being created).
       */
      topicExists?: (topic: string) => Promise<boolean>;
    },
  ) {}

  send(topic: string, message: Message): Promise<void> {
    const bytes = messageBytes(message);
    if (this.pending.length > 0 && this.bytes + bytes > gatheredBytes) this.flush();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ topic, message, bytes, done: (err) => (err === undefined ? resolve() : reject(err)) });
      this.bytes += bytes;
      if (this.pending.length >= 1_000 || this.bytes >= gatheredBytes) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.lingerMs ?? 2);
    });
  }

  /** Sends what is gathered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.bytes = 0;
    void this.write(batch);
  }

  private async write(batch: GatheringSender['pending']): Promise<void> {
    for (;;) {
      const byTopic = new Map<string, Message[]>();
      for (const r of batch) {
        const list = byTopic.get(r.topic);
        if (list) list.push(r.message);
        else byTopic.set(r.topic, [r.message]);
      }
      const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
      let missing: Set<string> | undefined;
      try {
        await retryUntilWritten(
          () => this.producer.sendBatch({ acks: -1, topicMessages }),
          topicMessages.length === 1 ? topicMessages[0]!.topic : `${topicMessages.length} topics`,
          {
            ...this.o,
            // A send refused for an unknown topic ends the retries if a topic is indeed missing.
            stopOn: this.o.topicExists
              ? async (err) => {
                  if (!unknownTopicError(err)) return false;
                  const exists = this.o.topicExists!;
                  const gone = (
                    await Promise.all([...byTopic.keys()].map(async (t) => ((await exists(t)) ? [] : [t])))
                  ).flat();
                  if (gone.length === 0) return false;
                  missing = new Set(gone);
                  return true;
                }
              : undefined,
          },
        );
        batch.forEach((r) => r.done());
        return;
      } catch (err) {
        if (!missing) {
          batch.forEach((r) => r.done(err ?? new Error('not written')));
          return;
        }
        const gone = missing;
        for (const r of batch) if (gone.has(r.topic)) r.done(new TopicMissingError(r.topic));
        batch = batch.filter((r) => !gone.has(r.topic));
        if (batch.length === 0) return;
      }
    }
  }
}
