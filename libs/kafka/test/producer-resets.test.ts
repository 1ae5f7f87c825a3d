import { FaultProxy, stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { createKafka, type SluiceKafka } from '../src/index.js';

/** The broker's FAULTS listener is advertised at the proxy's address: clients stay behind it. */
function proxyAddresses() {
  const [lh, lp] = (process.env['SLUICE_KAFKA_PROXY'] ?? '').split(':');
  const [th, tp] = (process.env['SLUICE_KAFKA_FAULTS_LISTENER'] ?? '').split(':');
  if (!lh || !lp || !th || !tp) throw new Error('the stack has no FAULTS listener: npm run stack:down && npm run stack:up');
  return { listen: { host: lh, port: Number(lp) }, target: { host: th, port: Number(tp) } };
}

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
