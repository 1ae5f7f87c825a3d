import { PubSub, type Message } from '@google-cloud/pubsub';
import { uniqueName, waitFor } from '@sluice/testing';

/** Publishes through a topic and receives on a subscription of an emulator at `endpoint`. */
export async function pubsubRoundTrip(endpoint: string, projectId: string): Promise<Message[]> {
  const pubsub = new PubSub({ apiEndpoint: endpoint, projectId, emulatorMode: true });
  const [topic] = await pubsub.createTopic(uniqueName('smoke-topic'));
  const [subscription] = await topic.createSubscription(uniqueName('smoke-sub'));
  const received: Message[] = [];
  subscription.on('message', (message: Message) => {
    received.push(message);
    message.ack();
  });
  try {
    await topic.publishMessage({
      data: Buffer.from('{"jobId":"job-1"}'),
      attributes: { jobId: 'job-1', status: 'completed' },
    });
    await topic.publishMessage({
      data: Buffer.from('{"jobId":"job-2"}'),
      attributes: { jobId: 'job-2', status: 'failed' },
    });
    await waitFor('two messages', () => (received.length >= 2 ? true : undefined), { timeoutMs: 20_000 });
  } finally {
    await subscription.close();
    await subscription.delete().catch(() => undefined);
    await topic.delete().catch(() => undefined);
    await pubsub.close();
  }
  return received;
}
