import { pipeline, Transform, type Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { SluiceError } from '@sluice/errors';
import { redisKeys, type JobView } from '@sluice/job-store';
import type { Job } from '@sluice/schemas';
import {
  topicAllowed,
  webhookSecretFor,
  webhookUrlProblem,
  type TenantPolicies,
  type TenantPolicy,
} from '@sluice/tenants';

/** How long a refusal for a count quota (open jobs, open rows) asks the caller to wait. */
const countQuotaRetryMs = 60_000;
/** Bytes of an upload read between two charges to the tenant's upload rate. */
const meterBytes = 1024 * 1024;

function exceeded(quota: string, message: string, hint: string, retryAfterMs: number, context = {}): SluiceError {
  return new SluiceError('QUOTA_EXCEEDED', message, {
    retryable: true,
    retryAfterMs,
    hint,
    context: { quota, ...context },
  });
}

/** A job's rows as its tenant's quota counts them: its total once known, else those committed. */
const rowsOf = (job: Job) => job.total ?? job.accepted + job.invalid;

/**
 * What a tenant may do, as SLUICE_TENANTS says (docs/tenants.md): where its jobs announce, and
 * its quotas (jobs not ended, their rows, upload bytes a minute), refused with 429 and
 * Retry-After. Quotas are checked, not reserved: two requests of one tenant at the same moment
 * may each pass the last unit of a count quota.
 */
export class Tenancy {
  private readonly uploadRates = new Map<number, RateLimiterRedis>();

  constructor(
    private readonly redis: Redis,
    private readonly policies: TenantPolicies,
    private readonly view: JobView,
    private readonly platformWebhookSecret: string | undefined,
    /** The window `uploadBytesPerMinute` is counted over: a minute, shorter in tests. */
    private readonly uploadWindowMs = 60_000,
  ) {}

  policy(tenant: string): TenantPolicy {
    return this.policies.of(tenant);
  }

  /** Refuses notifications the tenant may not use: another's topic, a webhook to a private address. */
  checkNotifications(tenant: string, n: { pubsubTopic?: string; webhookUrl?: string } | undefined): void {
    const policy = this.policy(tenant);
    if (n?.pubsubTopic !== undefined && !topicAllowed(policy, n.pubsubTopic)) {
      throw new SluiceError(
        'TOPIC_NOT_ALLOWED',
        `tenant ${tenant} may not announce on Pub/Sub topic "${n.pubsubTopic}"`,
        {
          hint:
            'leave notifications.pubsubTopic out to announce on the platform topic, or ask the operator to add the ' +
            `topic to SLUICE_TENANTS.${tenant}.pubsubTopics`,
          context: { topic: n.pubsubTopic },
        },
      );
    }
    if (n?.webhookUrl === undefined) return;
    if (this.platformWebhookSecret === undefined)
      throw new SluiceError('WEBHOOK_NOT_ALLOWED', 'this platform sends no webhooks (no SLUICE_WEBHOOK_SECRET)', {
        hint: 'leave notifications.webhookUrl out and subscribe to the Pub/Sub announcement, or ask the operator',
      });
    const problem = webhookUrlProblem(n.webhookUrl, policy);
    if (problem !== undefined)
      throw new SluiceError('WEBHOOK_NOT_ALLOWED', `notifications.webhookUrl: ${problem}`, {
        hint:
          'give a public https address; private ones are allowed only where the operator sets ' +
          `SLUICE_TENANTS.${tenant}.privateWebhooks`,
      });
  }

  /** The key the tenant's webhooks are signed with, derived from the platform's secret. */
  webhookSecret(tenant: string): string {
    if (this.platformWebhookSecret === undefined)
      throw new SluiceError('NOT_FOUND', 'this platform sends no webhooks (no SLUICE_WEBHOOK_SECRET)');
    return webhookSecretFor(this.platformWebhookSecret, tenant);
  }

  /** The tenant's quotas and what its jobs not ended use of them (GET /v1/quotas). */
  async usage(tenant: string) {
    const p = this.policy(tenant);
    const open = await this.view.openJobs(tenant);
    return {
      tenant,
      maxOpenJobs: p.maxOpenJobs,
      openJobs: open.length,
      maxOpenRows: p.maxOpenRows,
      openRows: open.reduce((sum, j) => sum + rowsOf(j), 0),
      uploadBytesPerMinute: p.uploadBytesPerMinute > 0 ? p.uploadBytesPerMinute : null,
      pubsubTopics: [...p.pubsubTopics],
      privateWebhooks: p.privateWebhooks,
    };
  }

  /** Refuses a new job while the tenant has `maxOpenJobs` jobs not ended. */
  async admitJob(tenant: string): Promise<void> {
    const { maxOpenJobs } = this.policy(tenant);
    const open = (await this.view.openJobs(tenant)).length;
    if (open >= maxOpenJobs)
      throw exceeded(
        'maxOpenJobs',
        `tenant ${tenant} has ${open} jobs not yet ended, its limit is ${maxOpenJobs}`,
        'wait for jobs to finish, seal or cancel jobs left open, or ask the operator to raise maxOpenJobs',
        countQuotaRetryMs,
        { limit: maxOpenJobs, used: open },
      );
  }

  /**
   * Rows an upload to `job` may still add under `maxOpenRows`: the limit less the rows of the
   * tenant's jobs not ended (this one's included). Refuses when none is left.
   */
  async rowRoom(tenant: string, job: Job): Promise<number> {
    const { maxOpenRows } = this.policy(tenant);
    let used = rowsOf(job);
    for (const other of await this.view.openJobs(tenant)) if (other.jobId !== job.jobId) used += rowsOf(other);
    const room = maxOpenRows - used;
    if (room <= 0) throw this.rowsExceeded(tenant, job, used);
    return room;
  }

  rowsExceeded(tenant: string, job: Job, used: number): SluiceError {
    const { maxOpenRows } = this.policy(tenant);
    return exceeded(
      'maxOpenRows',
      `tenant ${tenant}'s jobs not yet ended hold ${used} rows, its limit is ${maxOpenRows}; ` +
        `job ${job.jobId} has ${job.accepted + job.invalid} rows committed`,
      'upload the same input again once jobs have finished: it resumes after the committed rows',
      countQuotaRetryMs,
      { limit: maxOpenRows, used, committedRows: job.accepted + job.invalid },
    );
  }

  private uploadRate(perMinute: number): RateLimiterRedis {
    let r = this.uploadRates.get(perMinute);
    if (!r) {
      const windowMs = this.uploadWindowMs;
      r = new RateLimiterRedis({
        storeClient: this.redis,
        keyPrefix: redisKeys.uploadBytes(perMinute, windowMs),
        points: Math.max(1, Math.round((perMinute * windowMs) / 60_000)),
        duration: windowMs / 1_000,
      });
      this.uploadRates.set(perMinute, r);
    }
    return r;
  }

  /** Refuses an upload while the tenant's upload bytes of this minute are spent. */
  async admitUpload(tenant: string): Promise<void> {
    const perMinute = this.policy(tenant).uploadBytesPerMinute;
    if (perMinute <= 0) return;
    const r = await this.uploadRate(perMinute).get(tenant);
    if (r && r.remainingPoints <= 0)
      throw exceeded(
        'uploadBytesPerMinute',
        `tenant ${tenant} has uploaded its ${perMinute} bytes of this minute`,
        'retry after the time in Retry-After; an upload in progress is slowed to the rate, not refused',
        Math.max(1_000, r.msBeforeNext),
        { limit: perMinute },
      );
  }

  /**
   * The upload's bytes, read no faster than the tenant's `uploadBytesPerMinute` (each MiB is
   * charged as it passes; a charge over the minute's bytes waits for the next minute, calling
   * `waiting` while it does). The body itself when the tenant has no such limit.
   */
  meter(tenant: string, body: Readable, waiting: () => Promise<void>): Readable {
    const perMinute = this.policy(tenant).uploadBytesPerMinute;
    if (perMinute <= 0) return body;
    const rate = this.uploadRate(perMinute);
    const slice = rate.points;
    let uncharged = 0;
    // Charged a window's bytes at most at a time: a slice over what is left of the window waits
    // for the next one and is charged there.
    const charge = async (bytes: number) => {
      for (let left = bytes; left > 0;) {
        const take = Math.min(left, slice);
        try {
          await rate.consume(tenant, take);
          left -= take;
        } catch (res) {
          if (!(res instanceof RateLimiterRes)) throw res;
          for (let wait = res.msBeforeNext; wait > 0; wait -= 5_000) {
            await waiting();
            await new Promise((r) => setTimeout(r, Math.min(wait, 5_000)));
          }
        }
      }
    };
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        uncharged += chunk.length;
        if (uncharged < meterBytes) return done(null, chunk);
        const bytes = uncharged;
        uncharged = 0;
        charge(bytes).then(
          () => done(null, chunk),
          (err: Error) => done(err),
        );
      },
      flush(done) {
        if (uncharged === 0) return done();
        charge(uncharged).then(
          () => done(),
          (err: Error) => done(err),
        );
      },
    });
    return pipeline(body, meter, () => undefined);
  }
}
