import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PubSub, type Message } from '@google-cloud/pubsub';
import { stackSettings, uniqueName, waitFor } from '@sluice/testing';
import { webhookSecretFor } from '@sluice/tenants';
import { afterAll, describe, expect, it } from 'vitest';
import { createAnnouncer, signatureHeader, signWebhook, timestampHeader, type Announcement } from '../src/index.js';

const s = stackSettings();
const pubsub = new PubSub({ projectId: s.pubsubProject, apiEndpoint: s.pubsubEmulatorHost, emulatorMode: true });
afterAll(() => pubsub.close());

const announcement = (jobId: string): Announcement => ({
  jobId,
  tenant: 'alice',
  status: 'completed_with_errors',
  manifestUri: `gs://results/${jobId}/manifest.json`,
  counts: { total: 3, succeeded: 2, failed: 1, cancelled: 0 },
  finishedAt: new Date().toISOString(),
});

describe('announcer (Pub/Sub emulator, a local webhook receiver)', () => {
  it('publishes the job with its id, tenant and status as attributes', async () => {
    const topicName = uniqueName('jobs-done');
    const [topic] = await pubsub.createTopic(topicName);
    const [sub] = await topic.createSubscription(uniqueName('sub'));
    const got: Message[] = [];
    sub.on('message', (m: Message) => {
      got.push(m);
      m.ack();
    });
    const announcer = createAnnouncer({ pubsub: { projectId: s.pubsubProject, apiEndpoint: s.pubsubEmulatorHost } });
    try {
      const r = await announcer.announce(announcement('job_a1'), { pubsubTopic: topicName });
      await waitFor('the announcement', () => (got.length > 0 ? true : undefined), { timeoutMs: 20_000 });
      // The id the announcer reports is the id the subscriber receives (for tracing a delivery).
      expect(got[0]!.id).toBe(r.messageId);
      expect(got[0]!.attributes).toEqual({ jobId: 'job_a1', tenant: 'alice', status: 'completed_with_errors' });
      expect(JSON.parse(got[0]!.data.toString())).toMatchObject({ jobId: 'job_a1', counts: { failed: 1 } });
    } finally {
      await sub.close();
      await announcer.close();
    }
  });

  it('creates the default topic when asked to, for local stacks', async () => {
    const topicName = uniqueName('default-topic');
    const announcer = createAnnouncer({
      pubsub: {
        projectId: s.pubsubProject,
        apiEndpoint: s.pubsubEmulatorHost,
        defaultTopic: topicName,
        createTopics: true,
      },
    });
    try {
      await announcer.announce(announcement('job_a2'), {});
      const [exists] = await pubsub.topic(topicName).exists();
      expect(exists).toBe(true);
    } finally {
      await announcer.close();
    }
  });

  it("posts a webhook signed with its tenant's own key, which the receiver can verify, and retries a 503", async () => {
    const seen: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ headers: req.headers, body });
        res.statusCode = seen.length === 1 ? 503 : 204;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/sluice`;
    const announcer = createAnnouncer({
      webhook: { secret: 'platform-secret', timeoutMs: 2_000, allowPrivate: (t) => t === 'alice' },
    });
    try {
      const r = await announcer.announce(announcement('job_a3'), { webhookUrl: url });
      expect(r.webhookStatus).toBe(204);
      expect(seen).toHaveLength(2);
      const last = seen[1]!;
      const ts = String(last.headers[timestampHeader]);
      // The tenant's key (GET /v1/webhook-secret serves it), not the platform's secret nor another tenant's.
      expect(last.headers[signatureHeader]).toBe(
        signWebhook(webhookSecretFor('platform-secret', 'alice'), ts, last.body),
      );
      expect(last.headers[signatureHeader]).not.toBe(signWebhook('platform-secret', ts, last.body));
      expect(last.headers[signatureHeader]).not.toBe(
        signWebhook(webhookSecretFor('platform-secret', 'bob'), ts, last.body),
      );
      expect(JSON.parse(last.body)).toMatchObject({ jobId: 'job_a3', status: 'completed_with_errors' });
    } finally {
      server.close();
      await announcer.close();
    }
  });

  it('says so when a job has a webhook but no secret is configured', async () => {
    const announcer = createAnnouncer({});
    const r = await announcer.announce(announcement('job_a4'), { webhookUrl: 'http://127.0.0.1:9/x' });
    expect(r.webhookError).toMatch(/no webhook secret is configured/);
  });

  it('posts nothing to this machine or a private network, by address or by a name that resolves there, unless the tenant allows it', async () => {
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      res.statusCode = 204;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const announcer = createAnnouncer({ webhook: { secret: 's', timeoutMs: 2_000, attempts: 2 } });
    try {
      for (const url of [
        `http://127.0.0.1:${port}/x`,
        `http://localhost:${port}/x`,
        `http://[::ffff:127.0.0.1]:${port}/x`,
      ]) {
        const r = await announcer.announce(announcement('job_a6'), { webhookUrl: url });
        expect(r.webhookStatus, url).toBeUndefined();
        expect(r.webhookError, url).toMatch(
          /loopback, private or link-local address, which this tenant's webhooks may not reach/,
        );
      }
      expect(hits).toBe(0);
      const allowed = createAnnouncer({ webhook: { secret: 's', timeoutMs: 2_000, allowPrivate: () => true } });
      const r = await allowed.announce(announcement('job_a6'), { webhookUrl: `http://localhost:${port}/x` });
      expect(r.webhookStatus).toBe(204);
      expect(hits).toBe(1);
      await allowed.close();
    } finally {
      server.close();
      await announcer.close();
    }
  });

  it('does not follow a redirect: the webhook fails, saying so, and the address it points to gets nothing', async () => {
    let targetHits = 0;
    const target = createServer((req, res) => {
      targetHits++;
      res.end();
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    let redirects = 0;
    const redirector = createServer((req, res) => {
      redirects++;
      res.writeHead(307, { location: `http://127.0.0.1:${(target.address() as AddressInfo).port}/internal` });
      res.end();
    });
    await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
    const announcer = createAnnouncer({ webhook: { secret: 's', timeoutMs: 2_000, allowPrivate: () => true } });
    try {
      const r = await announcer.announce(announcement('job_a7'), {
        webhookUrl: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/hook`,
      });
      expect(r.webhookError).toMatch(/answered 307, a redirect: Sluice does not follow redirects/);
      expect([redirects, targetHits]).toEqual([1, 0]);
    } finally {
      target.close();
      redirector.close();
      await announcer.close();
    }
  });

  it('reports a webhook that keeps failing instead of throwing', async () => {
    const announcer = createAnnouncer({
      webhook: { secret: 's', timeoutMs: 500, attempts: 2, allowPrivate: () => true },
    });
    const r = await announcer.announce(announcement('job_a5'), { webhookUrl: 'http://127.0.0.1:9/unreachable' });
    expect(r.webhookStatus).toBeUndefined();
    expect(r.webhookError).toMatch(/webhook for job job_a5 failed/);
  });
});
