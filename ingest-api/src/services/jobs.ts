import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { SluiceError } from '@sluice/errors';
import { JobView, redisKeys, type RunCounts } from '@sluice/job-store';
import {
  jobsTopic,
  jobsTopicSpec,
  laneTopic,
  resultsTopic,
  type Logger,
  type Message as KafkaMessage,
  type SluiceKafka,
} from '@sluice/kafka';
import type { Job, JobEvent, SchemaCodecs } from '@sluice/schemas';
import type { IngestConfig } from '../config.js';
import type { InputFormat } from '../input/reader.js';
import { Idempotency } from './idempotency.js';
import { readJobsTopic } from './jobs-topic.js';
import { Placement } from './placement.js';
import type { JobParametersInput } from './row-request.js';
import { Tenancy } from './tenancy.js';
import { cancelledDuringUpload, UploadWriter, type UploadSummary } from './upload-writer.js';

export interface CreateJobInput {
  provider: string;
  model: string;
  parameters?: JobParametersInput;
  priority?: number;
  promptTemplate?: string;
  metadata?: Record<string, string>;
  notifications?: { pubsubTopic?: string; webhookUrl?: string };
  /** http: rows come by upload; kafka: other pipelines produce them to the lane. @default http */
  source?: 'http' | 'kafka';
  /** How many lane partitions the job's prompts spread over. @default 1 */
  parallelism?: number;
}

export interface JobServiceDeps {
  kafka: SluiceKafka;
  redis: Redis;
  codecs: SchemaCodecs;
  config: IngestConfig;
  log: Logger;
  /** How long an upload holds its job's upload lock without progress. @default 30000 */
  uploadLockMs?: number;
  /** How often the view's ready marker is checked (rebuilt when Redis lost it). @default 5000 */
  viewCheckMs?: number;
  /** How often open jobs are checked for expiry (config.openJobTtlMs). @default 600000 */
  expiryCheckMs?: number;
  /** The window a tenant's uploadBytesPerMinute is counted over (shorter in tests). @default 60000 */
  uploadRateWindowMs?: number;
}

const terminal = new Set(['cancelled', 'completed', 'completed_with_errors', 'failed']);

function newJobId(): string {
  return `job_${Date.now().toString(36)}${randomBytes(6).toString('hex')}`;
}

/**
 * Jobs: creation (placement, topics, the created event), reads from the Redis view, cancellation,
 * and uploads. An upload is written in Kafka transactions of `chunkRows` rows: each carries the
 * chunk's prompts, its rows' error outcomes and a job event with the new counts, so that what the
 * job counts and what is in Kafka never differ, even when the upload or the API dies midway.
 */
export type { UploadSummary } from './upload-writer.js';

export class JobService {
  readonly view: JobView;
  readonly placement: Placement;
  readonly tenancy: Tenancy;
  private readonly idempotency: Idempotency;
  private readonly producer;
  private readonly log: Logger;
  private readonly lockMs: number;
  private viewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private rebuilding: Promise<void> | undefined;

  constructor(private readonly deps: JobServiceDeps) {
    this.view = new JobView(deps.redis);
    this.placement = new Placement(deps.redis, deps.config.lanePartitions);
    this.tenancy = new Tenancy(
      deps.redis,
      deps.config.tenants,
      this.view,
      deps.config.webhookSecret,
      deps.uploadRateWindowMs,
    );
    this.idempotency = new Idempotency(deps.redis, this.view);
    this.producer = deps.kafka.producer({ ordered: true });
    this.log = deps.log;
    this.lockMs = deps.uploadLockMs ?? 30_000;
  }

  async start(): Promise<void> {
    const { config, kafka } = this.deps;
    await kafka.ensureTopics([
      jobsTopicSpec(),
      ...Object.keys(config.models).map((p) => ({ topic: laneTopic(p), partitions: config.lanePartitions })),
    ]);
    await this.producer.connect();
    if (!(await this.view.isReady())) await this.rebuildView();
    // Redis may lose its data while the API runs (a restart without persistence): the view is
    // rebuilt as soon as its ready marker is seen missing, not at the next start.
    this.viewTimer = setInterval(() => void this.checkView(), this.deps.viewCheckMs ?? 5_000);
    this.expiryTimer = setInterval(
      () => void this.expireOpenJobs().catch((err: unknown) => this.log.warn({ err }, 'open-job expiry failed')),
      this.deps.expiryCheckMs ?? 600_000,
    );
  }

  /**
   * Cancels the jobs left open (never sealed) with no change for `openJobTtlMs`: status cancelled,
   * statusReason saying why. Their rows so far end as they would after a cancel, and the job
   * stops holding its topic and placement. Every replica runs it; a cancel of an ended job is a no-op.
   */
  async expireOpenJobs(now = Date.now()): Promise<string[]> {
    const ttl = this.deps.config.openJobTtlMs;
    const expired: string[] = [];
    for await (const job of this.view.scan()) {
      if (job.status !== 'open' || !(now - job.updatedAt >= ttl)) continue;
      const reason =
        `expired: open ${Math.round(ttl / 3_600_000)} h with no input and no seal ` +
        '(SLUICE_OPEN_JOB_TTL_MS); its rows so far end as cancelled';
      await this.cancel(job.tenant, job.jobId, reason);
      expired.push(job.jobId);
    }
    if (expired.length > 0) this.log.info({ jobs: expired.length }, 'open jobs past their time expired');
    return expired;
  }

  async close(): Promise<void> {
    clearInterval(this.viewTimer);
    clearInterval(this.expiryTimer);
    await this.rebuilding;
    await this.producer.disconnect();
  }

  private async checkView(): Promise<void> {
    if (this.rebuilding) return;
    try {
      if (await this.view.isReady()) return;
    } catch {
      return; // Redis does not answer: asked again at the next check
    }
    this.log.warn({}, 'the job view in Redis is gone (sluice:view:ready missing): rebuilding it from sluice.jobs');
    this.rebuilding = this.rebuildView()
      .then(() => undefined)
      .catch((err: unknown) => this.log.error({ err }, 'job view rebuild failed; trying again'))
      .finally(() => (this.rebuilding = undefined));
    await this.rebuilding;
  }

  async create(
    tenant: string,
    input: CreateJobInput,
    idempotencyKey?: string,
  ): Promise<{ job: Job; created: boolean }> {
    const models = this.deps.config.models[input.provider];
    if (!models) {
      throw new SluiceError('UNKNOWN_PROVIDER', `unknown provider "${input.provider}"`, {
        hint: `use one of: ${Object.keys(this.deps.config.models).join(', ')}`,
      });
    }
    if (!models.includes('*') && !models.includes(input.model)) {
      throw new SluiceError('UNKNOWN_MODEL', `provider ${input.provider} has no model "${input.model}"`, {
        hint: `use one of: ${models.join(', ')}`,
      });
    }
    this.tenancy.checkNotifications(tenant, input.notifications);
    const jobId = newJobId();
    const claim = await this.idempotency.claim(tenant, idempotencyKey, input, jobId);
    if ('existing' in claim) return { job: claim.existing, created: false };
    let partitions: number[] = [];
    const progress = { created: false };
    try {
      await this.tenancy.admitJob(tenant);
      partitions = await this.placement.place(input.provider, input.parallelism ?? 1);
      return await this.write(tenant, jobId, input, partitions, idempotencyKey, progress);
    } catch (err) {
      // Before its created event, nothing of the job exists: its key and its partitions are free
      // again (a retry got 503 for the key's 24 h, and the partitions counted a job never made).
      if (!progress.created) {
        await claim.release().catch(() => undefined);
        if (partitions.length > 0)
          await this.placement.release(input.provider, jobId, partitions).catch(() => undefined);
      }
      throw err;
    }
  }

  private async write(
    tenant: string,
    jobId: string,
    input: CreateJobInput,
    partitions: number[],
    idempotencyKey: string | undefined,
    progress: { created: boolean },
  ): Promise<{ job: Job; created: boolean }> {
    const now = Date.now();
    const job: Job = {
      jobId,
      tenant,
      status: 'open',
      provider: input.provider,
      model: input.model,
      priority: input.priority ?? 0,
      source: input.source ?? 'http',
      parameters: JSON.stringify(input.parameters ?? {}),
      promptTemplate: input.promptTemplate ?? null,
      metadata: input.metadata ?? {},
      notifications: JSON.stringify(input.notifications ?? {}),
      idempotencyKey: idempotencyKey ?? null,
      laneTopic: laneTopic(input.provider),
      partitions,
      resultsTopic: resultsTopic(jobId),
      accepted: 0,
      invalid: 0,
      total: null,
      createdAt: now,
      updatedAt: now,
      finalizedAt: null,
      manifestUri: null,
      inputDigest: null,
      statusReason: null,
    };
    await this.deps.kafka.ensureTopics([{ topic: job.resultsTopic, partitions: this.deps.config.resultsPartitions }]);
    await this.producer.send({ topic: jobsTopic, acks: -1, messages: [this.eventMessage('created', job)] });
    progress.created = true;
    await this.view.put(job);
    this.log.info({ jobId, tenant, provider: job.provider, model: job.model, partitions }, 'job created');
    return { job, created: true };
  }

  /** The tenant's job; another tenant's job does not exist for it. */
  async get(tenant: string, jobId: string): Promise<{ job: Job; counts: RunCounts }> {
    const job = await this.view.get(jobId);
    if (!job && !(await this.view.isReady()))
      throw new SluiceError('UNAVAILABLE', 'the job view is being rebuilt from sluice.jobs (Redis lost its data)', {
        hint: 'retry in a few seconds',
        retryable: true,
      });
    if (!job || job.tenant !== tenant) throw new SluiceError('NOT_FOUND', `no job ${jobId}`, { context: { jobId } });
    return { job, counts: await this.view.counts(jobId) };
  }

  list(tenant: string, limit: number, before?: number): Promise<Job[]> {
    return this.view.list(tenant, limit, before);
  }

  async cancel(tenant: string, jobId: string, reason: string | null = null): Promise<Job> {
    const { job } = await this.get(tenant, jobId);
    if (terminal.has(job.status)) return job;
    const next: Job = { ...job, status: 'cancelled', statusReason: reason, updatedAt: Date.now() };
    // Written as the job's uploads write (their transactional id): a transaction of an upload in
    // progress is fenced and aborted, so its next chunk cannot follow the cancel with the job
    // open again (a cancel sent during an upload was undone by the next chunk's commit).
    const fence = this.deps.kafka.producer({ transactionalId: uploadTransactionalId(jobId) });
    await fence.connect();
    try {
      const txn = await fence.transaction();
      try {
        await txn.send({ topic: jobsTopic, acks: -1, messages: [this.eventMessage('cancelled', next)] });
        await txn.commit();
      } catch (err) {
        await txn.abort().catch(() => undefined);
        throw err;
      }
    } finally {
      await fence.disconnect().catch(() => undefined);
    }
    await this.view.put(next);
    await this.placement.release(job.provider, job.jobId, job.partitions);
    this.log.info({ jobId, tenant }, 'job cancelled');
    return next;
  }

  /** Seals a job whose prompts other pipelines produce to its lane: its total is now known. */
  async seal(tenant: string, jobId: string, total: number): Promise<Job> {
    const { job } = await this.get(tenant, jobId);
    if (job.status !== 'open') throw new SluiceError('JOB_NOT_OPEN', `job ${jobId} is ${job.status}, not open`);
    const next: Job = { ...job, status: 'sealed', total, accepted: total - job.invalid, updatedAt: Date.now() };
    await this.producer.send({ topic: jobsTopic, acks: -1, messages: [this.eventMessage('sealed', next)] });
    await this.view.put(next);
    return next;
  }

  /**
   * Reads an upload and writes its rows to Kafka in transactions. A second upload to a job whose
   * first was cut off resumes after the rows the first committed.
   */
  async upload(tenant: string, jobId: string, body: Readable, format: InputFormat): Promise<UploadSummary> {
    const { job: current } = await this.get(tenant, jobId);
    if (current.status !== 'open') {
      throw new SluiceError(
        'JOB_NOT_OPEN',
        `job ${jobId} is ${current.status}; input can only be added to an open job`,
      );
    }
    if (current.source !== 'http') {
      throw new SluiceError('JOB_NOT_OPEN', `job ${jobId} takes its prompts from Kafka producers, not uploads`);
    }
    await this.tenancy.admitUpload(tenant);
    const lockKey = redisKeys.uploadLock(jobId);
    const lockId = randomBytes(8).toString('hex');
    if ((await this.deps.redis.set(lockKey, lockId, 'PX', this.lockMs, 'NX')) !== 'OK') {
      throw new SluiceError('UPLOAD_IN_PROGRESS', `another upload to job ${jobId} is in progress`, {
        retryable: true,
        retryAfterMs: this.lockMs,
        hint: 'wait for it to finish, or retry after the lock expires if it was interrupted',
      });
    }
    const producer = this.deps.kafka.producer({ transactionalId: uploadTransactionalId(jobId) });
    const pendingKey = redisKeys.uploadPending(jobId);
    let writer: UploadWriter | undefined;
    try {
      await producer.connect(); // fences (and aborts) a transaction left open by a crashed upload
      const job = await this.resumeState(current, pendingKey);
      const { kafka, redis, codecs, config } = this.deps;
      const deps = { kafka, redis, codecs, config, view: this.view, tenancy: this.tenancy, producer };
      writer = new UploadWriter({ ...deps, lockKey, pendingKey, lockMs: this.lockMs }, job);
      const summary = await writer.run(body, format);
      const { accepted, invalid, resumedFrom, total } = summary;
      this.log.info({ jobId, tenant, accepted, invalid, resumedFrom, total }, 'job input sealed');
      return summary;
    } catch (caught) {
      throw await this.uploadError(tenant, jobId, writer?.committedRows ?? current.accepted + current.invalid, caught);
    } finally {
      await producer.disconnect().catch(() => undefined);
      if ((await this.deps.redis.get(lockKey)) === lockId) await this.deps.redis.del(lockKey);
    }
  }

  /**
   * The job's committed state: an earlier upload that died with a chunk in flight left a marker,
   * and whether that chunk committed only Kafka knows.
   */
  private async resumeState(job: Job, pendingKey: string): Promise<Job> {
    if ((await this.deps.redis.exists(pendingKey)) !== 1) return job;
    const committed = (await readJobsTopic(this.deps, job.jobId)).get(job.jobId) ?? job;
    await this.view.put(committed);
    await this.deps.redis.del(pendingKey);
    const committedRows = committed.accepted + committed.invalid;
    this.log.info({ jobId: job.jobId, committedRows }, 'upload resumed from the state in sluice.jobs');
    return committed;
  }

  /** What an upload that ended early says: its own refusal, a cancel, or an interruption to resume. */
  private async uploadError(
    tenant: string,
    jobId: string,
    committedRows: number,
    caught: unknown,
  ): Promise<SluiceError> {
    // A fenced transaction: the job was cancelled while this upload ran. The cancel fences
    // before it commits its event and writes the view, so a fenced upload waits for the view.
    const err =
      !(caught instanceof SluiceError) && (await this.cancelledMeanwhile(jobId, caught))
        ? cancelledDuringUpload(jobId, committedRows)
        : caught;
    if (err instanceof SluiceError) {
      this.log.info({ jobId, tenant, code: err.code, committedRows }, 'upload refused; its last chunk was rolled back');
      return err;
    }
    this.log.warn({ jobId, tenant, err, committedRows }, 'upload interrupted; its last chunk was rolled back');
    return new SluiceError(
      'UPLOAD_INTERRUPTED',
      `the upload ended before its end: ${(err as Error).message}. ` +
        `${committedRows} rows are committed; upload the same input again to resume after them`,
      { cause: err, retryable: true, context: { committedRows } },
    );
  }

  /**
   * Whether the job reads cancelled, waiting up to 5 s for it when `err` says another writer of
   * the job's transactional id fenced this one (a cancel in progress).
   */
  private async cancelledMeanwhile(jobId: string, err: unknown): Promise<boolean> {
    const until = Date.now() + (fencedBy(err) ? 5_000 : 0);
    for (;;) {
      if ((await this.view.get(jobId))?.status === 'cancelled') return true;
      if (Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private eventMessage(type: string, job: Job): KafkaMessage {
    const event: JobEvent = { type, at: Date.now(), job };
    return { key: job.jobId, value: this.deps.codecs.jobEvent.encodeSync(event) };
  }

  /** Rebuilds the Redis view from the compacted job topic, reading it to its end. */
  async rebuildView(): Promise<number> {
    const token = await this.view.beginRebuild();
    let rebuilt = 0;
    for (const job of (await readJobsTopic(this.deps)).values()) {
      await this.view.putIfNewer(job);
      await this.idempotency.restore(job);
      rebuilt++;
    }
    if (!(await this.view.markReady(token))) {
      // Redis lost its data again while this rebuild read: what it put may miss jobs; again.
      this.log.warn({ jobs: rebuilt }, 'Redis lost the view during its rebuild; the view stays unready');
      return rebuilt;
    }
    this.log.info({ jobs: rebuilt }, 'job view rebuilt from sluice.jobs');
    return rebuilt;
  }
}

/** The transactional id of a job's uploads, and of its cancel, which fences them. */
const uploadTransactionalId = (jobId: string) => `sluice-ingest-${jobId}`;

/** Whether a Kafka error (or one it wraps) says a newer producer of the same transactional id took over. */
function fencedBy(err: unknown): boolean {
  for (let e = err as { type?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (e.type === 'INVALID_PRODUCER_EPOCH' || e.type === 'PRODUCER_FENCED') return true;
    e = e.cause as typeof e;
  }
  return false;
}
