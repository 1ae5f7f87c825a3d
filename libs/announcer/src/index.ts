import { createHmac } from 'node:crypto';
import { PubSub } from '@google-cloud/pubsub';

/** What a finished job's announcement says; subscribers dedupe by `jobId`. */
export interface Announcement {
  jobId: string;
  tenant: string;
  /** completed | completed_with_errors | failed | cancelled: as the job view and the manifest say it */
  status: string;
  manifestUri: string;
  counts: { total: number; succeeded: number; failed: number; cancelled: number };
  finishedAt: string;
}

export interface AnnounceTarget {
  /** The job's own Pub/Sub topic; absent: the announcer's default topic. */
  pubsubTopic?: string;
  webhookUrl?: string;
}

export interface AnnouncerOptions {
  pubsub?: {
    projectId: string;
    /** The emulator's host:port; absent: Google Cloud Pub/Sub. */
    apiEndpoint?: string;
    /** Where jobs without a topic of their own are announced. */
    defaultTopic?: string;
    /** Create a missing topic (local stacks); production topics come from infra/. @default false */
    createTopics?: boolean;
  };
  webhook?: {
    /** The HMAC-SHA256 key webhooks are signed with. */
    secret: string;
    /** @default 10000 */
    timeoutMs?: number;
    /** @default 3 */
    attempts?: number;
  };
}

export interface AnnounceResult {
  messageId?: string;
  webhookStatus?: number;
  webhookError?: string;
}

export interface Announcer {
  /**
   * Publishes to Pub/Sub (rejects when that fails: the caller tries again) and posts the webhook
   * when given (a receiver that still fails after its attempts is reported in `webhookError`, so
   * that one broken endpoint cannot hold a job open).
   */
  announce(a: Announcement, target: AnnounceTarget): Promise<AnnounceResult>;
  /**
   * A witness of a job's Pub/Sub announcement: a subscription of Sluice's own on the job's topic,
   * opened before the announcement, so that after a crash between publishing and noting it, the
   * sink can tell whether the announcement went out (and not publish it twice).
   */
  witness(jobId: string, target: AnnounceTarget): AnnouncementWitness;
  close(): Promise<void>;
}

export interface AnnouncementWitness {
  /** Opens the witness subscription (before the announcement). */
  open(): Promise<void>;
  /** Whether the job's announcement reached the topic since open() (waits up to `waitMs` for it). */
  saw(waitMs?: number): Promise<boolean>;
  /** Deletes the witness subscription. */
  close(): Promise<void>;
}

export const signatureHeader = 'x-sluice-signature';
export const timestampHeader = 'x-sluice-timestamp';

/** `sha256=<hex>` of "<timestamp>.<body>": receivers recompute it and compare, and reject old timestamps. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export function createAnnouncer(o: AnnouncerOptions): Announcer {
  const pubsub = o.pubsub
    ? new PubSub({
        projectId: o.pubsub.projectId,
        apiEndpoint: o.pubsub.apiEndpoint,
        emulatorMode: !!o.pubsub.apiEndpoint,
      })
    : undefined;
  const known = new Set<string>();

  const topicOf = async (name: string) => {
    const topic = pubsub!.topic(name);
    if (o.pubsub?.createTopics && !known.has(name)) {
      const [exists] = await topic.exists();
      if (!exists)
        await pubsub!.createTopic(name).catch((err: { code?: number }) => {
          if (err.code !== 6) throw err; // ALREADY_EXISTS: another replica made it
        });
      known.add(name);
    }
    return topic;
  };

  const publish = async (name: string, a: Announcement): Promise<string> => {
    const topic = await topicOf(name);
    return topic.publishMessage({
      data: Buffer.from(JSON.stringify(a)),
      attributes: { jobId: a.jobId, tenant: a.tenant, status: a.status },
    });
  };

  const post = async (url: string, a: Announcement): Promise<number> => {
    const w = o.webhook!;
    const body = JSON.stringify(a);
    let last: unknown;
    for (let attempt = 1; attempt <= (w.attempts ?? 3); attempt++) {
      const timestamp = String(Math.floor(Date.now() / 1_000));
      try {
        const res = await fetch(url, {
          method: 'POST',
          body,
          signal: AbortSignal.timeout(w.timeoutMs ?? 10_000),
          headers: {
            'content-type': 'application/json',
            'x-sluice-job-id': a.jobId,
            [timestampHeader]: timestamp,
            [signatureHeader]: signWebhook(w.secret, timestamp, body),
          },
        });
        if (res.ok) return res.status;
        last = new Error(`webhook answered ${res.status}`);
        if (res.status < 500 && res.status !== 429) break; // the receiver refuses it; trying again won't help
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
    }
    throw new Error(`webhook for job ${a.jobId} failed: ${(last as Error).message}`);
  };

  return {
    async announce(a, target) {
      const out: AnnounceResult = {};
      const topic = target.pubsubTopic ?? o.pubsub?.defaultTopic;
      if (topic && pubsub) out.messageId = await publish(topic, a);
      if (target.webhookUrl) {
        if (!o.webhook) out.webhookError = `job ${a.jobId} has a webhook but no webhook secret is configured`;
        else
          out.webhookStatus = await post(target.webhookUrl, a).catch(
            (err: Error) => ((out.webhookError = err.message), undefined),
          );
      }
      return out;
    },
    witness(jobId, target) {
      const name = target.pubsubTopic ?? o.pubsub?.defaultTopic;
      if (!name || !pubsub)
        return { open: async () => undefined, saw: async () => false, close: async () => undefined };
      const subscription = pubsub.subscription(`sluice-witness-${jobId}`);
      return {
        async open() {
          const topic = await topicOf(name);
          await topic.createSubscription(subscription.name).catch((err: { code?: number }) => {
            if (err.code !== 6) throw err; // ALREADY_EXISTS: opened before a crash
          });
        },
        async saw(waitMs = 5_000) {
          const [exists] = await subscription.exists();
          if (!exists) return false;
          const listener = pubsub.subscription(subscription.name, { flowControl: { maxMessages: 100 } });
          try {
            return await new Promise<boolean>((resolve, reject) => {
              const timer = setTimeout(() => resolve(false), waitMs);
              listener.on('message', (m: { attributes: Record<string, string>; ack(): void }) => {
                m.ack();
                if (m.attributes['jobId'] === jobId) {
                  clearTimeout(timer);
                  resolve(true);
                }
              });
              listener.on('error', (err: Error) => {
                clearTimeout(timer);
                reject(err);
              });
            });
          } finally {
            await listener.close();
          }
        },
        async close() {
          await subscription.delete().catch((err: { code?: number }) => {
            if (err.code !== 5) throw err; // NOT_FOUND: closed already
          });
        },
      };
    },
    async close() {
      await pubsub?.close();
    },
  };
}
