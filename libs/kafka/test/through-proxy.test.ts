import { FaultProxy, proxyAddresses, stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import {
  createKafka,
  sendUntilWritten,
  watchConsumer,
  type Consumer,
  type Logger,
  type SluiceKafka,
} from '../src/index.js';

// One file for every test that runs the fault proxy: it listens on the one advertised address, and
// vitest runs the tests of a file one after another.

async function readAll(kafka: SluiceKafka, topic: string, expected: number): Promise<Set<string>> {
  const seen = new Set<string>();
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let last = Date.now();
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.add(message.value!.toString());
      last = Date.now();
    },
  });
  // Until every value is read, or nothing new came for 5 s.
  while (seen.size < expected && Date.now() - last < 5_000) await new Promise((r) => setTimeout(r, 100));
  await consumer.disconnect();
  return seen;
}

describe('producing through connection resets (real broker behind a TCP proxy)', () => {
  it('every send that resolved is in the topic, however often the connections are reset', async () => {
    const { listen, target } = proxyAddresses();
    const proxy = new FaultProxy(listen, target);
    await proxy.start();
    const direct = createKafka({ brokers: stackSettings().kafkaBrokers, clientId: 'resets-direct' });
    const viaProxy = createKafka({ brokers: [`${listen.host}:${listen.port}`], clientId: 'resets-proxy' });
    const topic = uniqueName('resets');
    await direct.ensureTopics([{ topic, partitions: 1 }]);
    // The dispatcher's pattern: many single-message sends in flight at once, each retried by the
    // caller until it resolves (what sendUntilWritten does), while the link is reset now and then.
    const producer = viaProxy.producer();
    await producer.connect();
    const resolved: string[] = [];
    let stop = false;
    const resets = (async () => {
      while (!stop) {
        await new Promise((r) => setTimeout(r, 150));
        proxy.resetAll();
      }
    })();
    try {
      await Promise.all(
        Array.from({ length: 40 }, async (_, worker) => {
          for (let i = 0; i < 40; i++) {
            const value = `w${worker}-m${i}`;
            for (;;) {
              try {
                await producer.send({ topic, acks: -1, messages: [{ value }] });
                break;
              } catch {
                await new Promise((r) => setTimeout(r, 50));
              }
            }
            resolved.push(value);
          }
        }),
      );
    } finally {
      stop = true;
      await resets;
      await producer.disconnect().catch(() => undefined);
      await proxy.stop();
    }
    expect(proxy.connections).toBeGreaterThan(3); // the resets did happen
    const inTopic = await readAll(direct, topic, resolved.length);
    const lost = resolved.filter((v) => !inTopic.has(v));
    expect(lost).toEqual([]);
    await direct.deleteTopics([topic]);
  }, 120_000);
});

describe('watchConsumer (real broker, a TCP proxy in between)', () => {
  it('reports a consumer whose fetches stopped, and not a healthy one with every partition paused', async () => {
    const { listen, target } = proxyAddresses();
    const proxy = new FaultProxy(listen, target);
    await proxy.start();
    const direct = createKafka({ brokers: stackSettings().kafkaBrokers, clientId: 'watch-direct' });
    const viaProxy = createKafka({ brokers: [`${listen.host}:${listen.port}`], clientId: 'watch-proxy' });
    const topic = uniqueName('watch');
    await direct.ensureTopics([{ topic, partitions: 2 }]);
    const consumers: Consumer[] = [];
    const stalls: Record<string, Array<{ idleMs: number; lastEvent: string }>> = { cut: [], paused: [] };
    const start = async (name: 'cut' | 'paused', kafka: typeof direct) => {
      const c = kafka.consumer({ groupId: uniqueName(name), maxWaitTimeInMs: 200 });
      consumers.push(c);
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({ eachMessage: async () => undefined });
      if (name === 'paused') c.pause([{ topic }]);
      return watchConsumer(c, { stallMs: 3_000, checkMs: 250, onStall: (s) => stalls[name]!.push(s) });
    };
    const unwatch = [await start('cut', viaProxy), await start('paused', direct)];
    try {
      await new Promise((r) => setTimeout(r, 4_000));
      expect(stalls).toEqual({ cut: [], paused: [] }); // both fetch (or wait) every 200 ms
      proxy.mode = 'blackhole'; // the cut consumer's fetch gets no answer: no event for 30 s
      await waitFor('a stall reported', () => (stalls['cut']!.length > 0 ? true : undefined), { timeoutMs: 10_000 });
      expect(stalls['cut']![0]!.idleMs).toBeGreaterThanOrEqual(3_000);
      expect(stalls['paused']).toEqual([]);
    } finally {
      for (const u of unwatch) u();
      proxy.mode = 'pass';
      await proxy.stop();
      await Promise.all(consumers.map((c) => Promise.race([c.disconnect(), new Promise((r) => setTimeout(r, 5_000))])));
      await direct.deleteTopics([topic]);
    }
  }, 60_000);
});

describe('watchConsumer with a batch in hand (real broker)', () => {
  it('reports a handler that never returns once batchStallMs has passed, not before', async () => {
    const kafka = createKafka({ brokers: stackSettings().kafkaBrokers, clientId: 'watch-batch' });
    const topic = uniqueName('watch-batch');
    await kafka.ensureTopics([{ topic, partitions: 1 }]);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ value: 'held' }] });
    await producer.disconnect();
    const consumer = kafka.consumer({ groupId: uniqueName('watch-batch'), maxWaitTimeInMs: 200 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let inHandlerAt = 0;
    let release: () => void = () => undefined;
    // The delay processor's hang: a handler waiting on a send that Kafka never answers.
    await consumer.run({
      eachBatch: async () => {
        inHandlerAt = Date.now();
        await new Promise<void>((r) => (release = r));
      },
    });
    const stalls: Array<{ idleMs: number; lastEvent: string }> = [];
    const unwatch = watchConsumer(consumer, {
      stallMs: 1_000,
      batchStallMs: 4_000,
      checkMs: 100,
      onStall: (s) => stalls.push(s),
    });
    try {
      await waitFor('the handler holds a batch', () => (inHandlerAt > 0 ? true : undefined), { timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 2_500));
      expect(stalls).toEqual([]); // past stallMs, inside batchStallMs: a long batch, not a hang
      await waitFor('a stall reported', () => (stalls.length > 0 ? true : undefined), { timeoutMs: 5_000 });
      expect(stalls[0]!.lastEvent).toBe('batch started');
      expect(stalls[0]!.idleMs).toBeGreaterThanOrEqual(4_000);
    } finally {
      unwatch();
      release();
      await consumer.disconnect();
      await kafka.deleteTopics([topic]);
    }
  }, 60_000);
});

describe('sendUntilWritten (real broker, a TCP proxy in between)', () => {
  it('sends again when Kafka neither answers nor fails, and writes the record once the link is back', async () => {
    const { listen, target } = proxyAddresses();
    const proxy = new FaultProxy(listen, target);
    await proxy.start();
    const direct = createKafka({ brokers: stackSettings().kafkaBrokers, clientId: 'silent-direct' });
    // kafkajs would wait a minute for an answer on the silent connection.
    const viaProxy = createKafka({
      brokers: [`${listen.host}:${listen.port}`],
      clientId: 'silent-proxy',
      requestTimeoutMs: 60_000,
    });
    const topic = uniqueName('silent');
    await direct.ensureTopics([{ topic, partitions: 1 }]);
    const producer = viaProxy.producer();
    await producer.connect();
    const retries: string[] = [];
    const log = { warn: (o: { err: Error }) => retries.push(o.err.message) } as unknown as Logger;
    try {
      proxy.mode = 'blackhole';
      const started = Date.now();
      const sent = sendUntilWritten(
        producer,
        { topic, acks: -1, messages: [{ value: 'after-the-silence' }] },
        { running: () => true, log, what: 'test record', attemptMs: 1_500 },
      );
      await waitFor('a second attempt', () => (retries.length > 0 ? true : undefined), { timeoutMs: 10_000 });
      expect(retries[0]).toBe('no answer from Kafka within 1500 ms');
      expect(Date.now() - started).toBeLessThan(5_000);
      // The link comes back as new connections (the silent ones stay silent): reset them.
      proxy.mode = 'pass';
      proxy.resetAll();
      await sent;
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      proxy.mode = 'pass';
      await producer.disconnect().catch(() => undefined);
      await proxy.stop();
    }
    const inTopic = await readAll(direct, topic, 1);
    expect([...inTopic]).toEqual(['after-the-silence']);
    await direct.deleteTopics([topic]);
  }, 60_000);
});
