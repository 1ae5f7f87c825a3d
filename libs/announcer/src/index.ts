import { createHmac } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { PubSub } from '@google-cloud/pubsub';
import { isPrivateAddress, webhookSecretFor } from '@sluice/tenants';

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
    /**
     * The platform's secret (SLUICE_WEBHOOK_SECRET): each tenant's webhooks are signed with the
     * key derived from it for that tenant (webhookSecretFor), which the tenant reads from the API.
     */
    secret: string;
    /**
     * Whether a tenant's webhooks may reach loopback, private and link-local addresses
     * (SLUICE_TENANTS privateWebhooks). @default none may
     */
    allowPrivate?: (tenant: string) => boolean;
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
    const key = webhookSecretFor(w.secret, a.tenant);
    const allowPrivate = w.allowPrivate?.(a.tenant) ?? false;
    let last: unknown;
    for (let attempt = 1; attempt <= (w.attempts ?? 3); attempt++) {
      const timestamp = String(Math.floor(Date.now() / 1_000));
      try {
        const status = await postOnce(url, body, allowPrivate, w.timeoutMs ?? 10_000, {
          'content-type': 'application/json',
          'x-sluice-job-id': a.jobId,
          [timestampHeader]: timestamp,
          [signatureHeader]: signWebhook(key, timestamp, body),
        });
        if (status >= 200 && status < 300) return status;
        last = new Error(
          status >= 300 && status < 400
            ? `webhook answered ${status}, a redirect: Sluice does not follow redirects (give the final address)`
            : `webhook answered ${status}`,
        );
        if (status < 500 && status !== 429) break; // the receiver refuses it; trying again won't help
      } catch (err) {
        last = err;
        if (err instanceof WebhookRefused) break;
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

/** A webhook Sluice will not post: an address its tenant may not reach, a scheme it does not speak. */
class WebhookRefused extends Error {}

/**
 * Resolves as dns.lookup does, refusing (unless `allowPrivate`) a name any of whose addresses is
 * loopback, private or link-local: the address checked is the one connected to, so a name that
 * resolves one way when checked and another when used (DNS rebinding) cannot slip through.
 */
function guardedLookup(allowPrivate: boolean): NonNullable<RequestOptions['lookup']> {
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err);
      const refused = allowPrivate ? undefined : addresses.find((x) => isPrivateAddress(x.address));
      if (refused)
        return callback(
          new WebhookRefused(
            `${hostname} resolves to ${refused.address}, a loopback, private or link-local address, ` +
              "which this tenant's webhooks may not reach (SLUICE_TENANTS privateWebhooks)",
          ),
        );
      if (options.all) return callback(null, addresses);
      return callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  }) as unknown as NonNullable<RequestOptions['lookup']>;
}

/** One POST, over node:http(s): redirects are answers, not followed. Resolves the status. */
function postOnce(
  url: string,
  body: string,
  allowPrivate: boolean,
  timeoutMs: number,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'https:' && u.protocol !== 'http:')
      return reject(new WebhookRefused(`a webhook is http or https, not ${u.protocol}`));
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (!allowPrivate && isIP(host) !== 0 && isPrivateAddress(host))
      return reject(
        new WebhookRefused(
          `${host} is a loopback, private or link-local address, which this tenant's webhooks may not reach`,
        ),
      );
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      u,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: guardedLookup(allowPrivate),
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
