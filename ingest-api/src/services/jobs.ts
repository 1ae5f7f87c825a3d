import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { SluiceError } from '@sluice/errors';
import {
  jobsTopic,
  jobsTopicSpec,
  laneTopic,
  messageBytes,
  promptId,
  resultsTopic,
  splitByBytes,
  type Logger,
  type Message as KafkaMessage,
  type SluiceKafka,
  type Transaction,
} from '@sluice/kafka';
import type { Job, JobEvent, Parameters, PromptOutcome, PromptRequest, SchemaCodecs } from '@sluice/schemas';
import type { IngestConfig } from '../config.js';
import { HashedIdSet } from '../input/id-set.js';
import { readInput, type InputFormat, type InputItem } from '../input/reader.js';
import type { PromptRow, RowError } from '../input/row.js';
import { JobView, redisKeys, type RunCounts } from '@sluice/job-store';
import { Placement } from './placement.js';
import { Tenancy } from './tenancy.js';

export interface JobParametersInput {
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  responseFormat?: Record<string, unknown>;
  stop?: string[];
  seed?: number;
}

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

export interface UploadSummary {
  jobId: string;
  status: string;
  /** Rows of this upload that became prompts. */
  accepted: number;
  /** Rows of this upload that became error outcomes. */
  invalid: number;
  /** Rows skipped because an earlier, interrupted upload had committed them. */
  resumedFrom: number;
  total: number | null;
  /** The first row errors, for the uploader to see at once (all are in the job's results). */
  errors: Array<{ line: number; code: string; message: string }>;
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
export class JobService {
  readonly view: JobView;
  readonly placement: Placement;
  readonly tenancy: Tenancy;
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
    const idemKey = idempotencyKey === undefined ? undefined : redisKeys.idempotency(tenant, idempotencyKey);
    // The key names the job and what was asked for it: a replay with another body is refused.
    const claim = `${jobId} ${requestFingerprint(input)}`;
    if (idemKey !== undefined) {
      const won = await this.deps.redis.set(idemKey, claim, 'EX', 86_400, 'NX');
      if (won !== 'OK') {
        const [existing = '', print] = ((await this.deps.redis.get(idemKey)) ?? '').split(' ');
        if (print !== undefined && print !== requestFingerprint(input)) {
          throw new SluiceError(
            'IDEMPOTENCY_KEY_REUSED',
            `Idempotency-Key "${idempotencyKey}" was used for job ${existing} with a different request`,
            { hint: 'send the same body to get that job back, or use a new key for a new job' },
          );
        }
        // A concurrent create with the same key may still be writing its job.
        for (let i = 0; i < 100; i++) {
          const job = await this.view.get(existing);
          if (job) return { job, created: false };
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new SluiceError('UNAVAILABLE', 'a job with this Idempotency-Key is being created; retry', {
          retryable: true,
        });
      }
    }
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
        if (idemKey !== undefined) await this.deps.redis.eval(deleteIfScript, 1, idemKey, claim).catch(() => undefined);
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
    await producer.connect(); // fences (and aborts) a transaction left open by a crashed upload
    const log = this.log;
    const c = this.deps.config;
    const pendingKey = redisKeys.uploadPending(jobId);
    let job = current;
    if ((await this.deps.redis.exists(pendingKey)) === 1) {
      // An earlier upload died with a chunk in flight: whether it committed, only Kafka knows.
      job = (await this.readJobsTopic(jobId)).get(jobId) ?? job;
      await this.view.put(job);
      await this.deps.redis.del(pendingKey);
      log.info({ jobId, committedRows: job.accepted + job.invalid }, 'upload resumed from the state in sluice.jobs');
    }
    const resumedFrom = job.accepted + job.invalid;
    let rowRoom = Infinity;
    // A digest of the rows as read, in order: each commit records it for the rows committed, and
    // an upload that resumes checks that its first rows are those (resume is by row count, and
    // another file would otherwise have its first rows skipped silently).
    const prefix = createHash('sha256');
    let prefixChecked = resumedFrom === 0 || job.inputDigest === null;
    const checkPrefix = () => {
      if (prefixChecked) return;
      prefixChecked = true;
      if (prefix.copy().digest('hex') !== job.inputDigest)
        throw new SluiceError(
          'INPUT_CHANGED',
          `the first ${resumedFrom} rows of this upload are not the ${resumedFrom} rows an earlier upload ` +
            `committed to job ${jobId}: it resumes after them, so it must start with them`,
          {
            hint: 'send the same file again to resume it, or create a new job for a different file',
            context: { committedRows: resumedFrom },
          },
        );
    };
    let rowIndex = 0;
    let accepted = 0;
    let invalid = 0;
    const errors: UploadSummary['errors'] = [];
    const customIds = new HashedIdSet();
    const jobParameters = JSON.parse(job.parameters) as JobParametersInput;
    const models = c.models[job.provider] ?? [];
    const submittedAt = Date.now();
    let lanes: KafkaMessage[] = [];
    let outcomes: KafkaMessage[] = [];
    let chunkAccepted = 0;
    let chunkInvalid = 0;
    let chunkBytes = 0;
    // What one record batch of each topic may hold, as the broker says: sends are split under
    // it, and a prompt record over it is its row's error, not the upload's.
    const [laneMax, resultsMax] = await Promise.all([
      this.deps.kafka.maxMessageBytes(job.laneTopic),
      this.deps.kafka.maxMessageBytes(job.resultsTopic),
    ]);

    const commit = async (seal: boolean): Promise<void> => {
      const next: Job = {
        ...job,
        accepted: job.accepted + chunkAccepted,
        invalid: job.invalid + chunkInvalid,
        updatedAt: Date.now(),
        inputDigest: prefix.copy().digest('hex'),
      };
      if (seal) {
        next.status = 'sealed';
        next.total = next.accepted + next.invalid;
      }
      // Marks the chunk in flight: if the process dies between the commit and the view update,
      // the next upload finds the marker and reads the job's committed state from sluice.jobs.
      await this.deps.redis.set(pendingKey, String(next.accepted + next.invalid), 'EX', 86_400);
      const txn: Transaction = await producer.transaction();
      try {
        const topicMessages = [
          { topic: jobsTopic, messages: [this.eventMessage(seal ? 'sealed' : 'input_progress', next)] },
        ];
        // Each send under a tenth less than a batch may hold, so that no partition's batch is
        // refused as too large ("larger than the max message size the server will accept").
        for (const messages of splitByBytes(lanes, 0.9 * laneMax))
          topicMessages.push({ topic: job.laneTopic, messages });
        for (const messages of splitByBytes(outcomes, 0.9 * resultsMax))
          topicMessages.push({ topic: job.resultsTopic, messages });
        for (const t of topicMessages) await txn.sendBatch({ topicMessages: [t], acks: -1 });
        await txn.commit();
      } catch (err) {
        await txn.abort().catch(() => undefined);
        throw err;
      }
      job = next;
      lanes = [];
      outcomes = [];
      chunkAccepted = 0;
      chunkInvalid = 0;
      chunkBytes = 0;
      // Never over a cancel that came meanwhile (its event follows this chunk's in sluice.jobs).
      if (!(await this.view.putUnlessEnded(job))) throw cancelledDuringUpload(jobId, job.accepted + job.invalid);
      await this.deps.redis.del(pendingKey);
      await this.deps.redis.pexpire(lockKey, this.lockMs);
    };

    const fail = (item: { line: number }, error: RowError, customId: string | null) => {
      const outcome: PromptOutcome = {
        jobId,
        promptId: promptId(jobId, rowIndex),
        rowIndex,
        tenant,
        customId,
        status: 'failed',
        result: null,
        error: { code: error.code, message: error.message, lineNumber: item.line },
        attempts: 0,
        attemptHistory: [],
        completedAt: Date.now(),
      };
      outcomes.push({ key: jobId, value: this.deps.codecs.promptOutcome.encodeSync(outcome) });
      chunkInvalid++;
      invalid++;
      if (errors.length < 20) errors.push({ line: item.line, code: error.code, message: error.message });
    };

    try {
      // Rows this upload may add under the tenant's maxOpenRows (refused now when none).
      rowRoom = await this.tenancy.rowRoom(tenant, job);
      // Read no faster than the tenant's upload rate; the lock is held while it waits.
      const metered = this.tenancy.meter(tenant, body, async () => {
        await this.deps.redis.pexpire(lockKey, this.lockMs);
      });
      for await (const item of readInput(metered, format, {
        maxLineBytes: c.maxLineBytes,
        maxFields: c.maxFields,
        maxMessages: c.maxMessages,
        template: job.promptTemplate,
      })) {
        if (rowIndex === resumedFrom) checkPrefix();
        if (rowIndex - resumedFrom >= rowRoom) {
          // The tenant's open rows are at their limit: the rows before this one are committed,
          // and the same input sent again later resumes after them.
          await commit(false);
          throw this.tenancy.rowsExceeded(tenant, job, c.tenants.of(tenant).maxOpenRows);
        }
        // The row's bytes as sent where the reader has them (JSONL, JSON): hashing a row
        // serialized again cost a tenth of an upload of 2 KB prompts.
        prefix.update(item.raw ?? JSON.stringify(item));
        prefix.update('\n');
        const customId = item.row?.customId ?? null;
        const duplicate = customId !== null && !customIds.add(customId);
        if (rowIndex < resumedFrom) {
          rowIndex++; // committed by an earlier upload of the same input
          continue;
        }

        if (duplicate) {
          fail(
            item,
            { code: 'INPUT_DUPLICATE_CUSTOM_ID', message: `custom_id "${customId}" was used by an earlier row` },
            customId,
          );
        } else if (item.error) {
          fail(item, item.error, item.customId ?? null);
        } else {
          const request = this.toRequest(job, item, rowIndex, jobParameters, models, submittedAt);
          const message =
            'code' in request
              ? undefined
              : {
                  key: jobId,
                  partition: job.partitions[rowIndex % job.partitions.length]!,
                  value: this.deps.codecs.promptRequest.encodeSync(request),
                };
          const bytes = message ? messageBytes(message) : 0;
          if ('code' in request) fail(item, request, customId);
          else if (bytes > laneMax)
            fail(
              item,
              {
                code: 'INPUT_RECORD_TOO_LARGE',
                message:
                  `its prompt record is ${bytes} bytes, more than the ${laneMax} bytes of max.message.bytes ` +
                  `of ${job.laneTopic}: shorten the prompt, or raise the topic's max.message.bytes`,
              },
              customId,
            );
          else {
            lanes.push(message!);
            chunkBytes += bytes;
            chunkAccepted++;
            accepted++;
          }
        }
        rowIndex++;
        if (chunkAccepted + chunkInvalid >= c.chunkRows || chunkBytes >= c.chunkBytes) await commit(false);
      }
      if (rowIndex <= resumedFrom) checkPrefix(); // the same file with no row more, or a shorter one
      if (rowIndex === 0) {
        throw new SluiceError('INPUT_EMPTY', 'the upload has no rows', {
          hint: 'send one JSON object per line (JSONL), a JSON array, or a CSV with a header row and data rows',
        });
      }
      await commit(true);
      log.info({ jobId, tenant, accepted, invalid, resumedFrom, total: job.total }, 'job input sealed');
      return { jobId, status: job.status, accepted, invalid, resumedFrom, total: job.total, errors };
    } catch (caught) {
      const committedRows = job.accepted + job.invalid;
      // A fenced transaction: the job was cancelled while this upload ran. The cancel fences
      // before it commits its event and writes the view, so a fenced upload waits for the view.
      const err =
        !(caught instanceof SluiceError) && (await this.cancelledMeanwhile(jobId, caught))
          ? cancelledDuringUpload(jobId, committedRows)
          : caught;
      if (err instanceof SluiceError) {
        log.info({ jobId, tenant, code: err.code, committedRows }, 'upload refused; its last chunk was rolled back');
        throw err;
      }
      log.warn({ jobId, tenant, err, committedRows }, 'upload interrupted; its last chunk was rolled back');
      throw new SluiceError(
        'UPLOAD_INTERRUPTED',
        `the upload ended before its end: ${(err as Error).message}. ` +
          `${job.accepted + job.invalid} rows are committed; upload the same input again to resume after them`,
        { cause: err, retryable: true, context: { committedRows: job.accepted + job.invalid } },
      );
    } finally {
      await producer.disconnect().catch(() => undefined);
      if ((await this.deps.redis.get(lockKey)) === lockId) await this.deps.redis.del(lockKey);
    }
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

  private toRequest(
    job: Job,
    item: InputItem & { row: PromptRow },
    rowIndex: number,
    defaults: JobParametersInput,
    models: string[],
    submittedAt: number,
  ): PromptRequest | RowError {
    const row = item.row;
    const model = row.model ?? job.model;
    if (row.model !== null && !models.includes('*') && !models.includes(row.model)) {
      return {
        code: 'INPUT_UNKNOWN_MODEL',
        message: `model "${row.model}" is not a ${job.provider} model (${models.join(', ')})`,
      };
    }
    const parameters = mergeParameters(defaults, row.overrides);
    if ('code' in parameters) return parameters;
    return {
      jobId: job.jobId,
      promptId: promptId(job.jobId, rowIndex),
      rowIndex,
      tenant: job.tenant,
      provider: job.provider,
      model,
      messages: row.messages,
      parameters,
      attempt: 0,
      customId: row.customId,
      priority: job.priority,
      submittedAt,
      source: 'http',
    };
  }

  private eventMessage(type: string, job: Job): KafkaMessage {
    const event: JobEvent = { type, at: Date.now(), job };
    return { key: job.jobId, value: this.deps.codecs.jobEvent.encodeSync(event) };
  }

  /** Rebuilds the Redis view from the compacted job topic, reading it to its end. */
  async rebuildView(): Promise<number> {
    const token = await this.view.beginRebuild();
    let rebuilt = 0;
    for (const job of (await this.readJobsTopic()).values()) {
      await this.view.putIfNewer(job);
      if (job.idempotencyKey) {
        await this.deps.redis.set(redisKeys.idempotency(job.tenant, job.idempotencyKey), job.jobId, 'EX', 86_400, 'NX');
      }
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

  /** The latest committed state of every job (or of one) in sluice.jobs, read to its end. */
  private async readJobsTopic(only?: string): Promise<Map<string, Job>> {
    const { kafka, codecs } = this.deps;
    const admin = kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(jobsTopic);
    await admin.disconnect();
    const remaining = new Map(ends.filter((e) => e.high !== e.low).map((e) => [e.partition, Number(e.high)]));
    const latest = new Map<string, Job>();
    if (remaining.size === 0) return latest;
    // A group of its own for one read, which commits nothing and is deleted after it: such groups
    // piled up in the group list (one per rebuild and per resumed upload, each showing lag).
    const groupId = `sluice-ingest-read-${randomBytes(4).toString('hex')}`;
    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    await consumer.subscribe({ topic: jobsTopic, fromBeginning: true });
    // Until the group is joined nothing can arrive: the quiet period starts then.
    let lastProgress = Date.now() + 60_000;
    consumer.on(consumer.events.GROUP_JOIN, () => (lastProgress = Math.min(lastProgress, Date.now())));
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          if (!message.value || (only !== undefined && message.key?.toString() !== only)) continue;
          const event = await codecs.jobEvent.decode(message.value);
          latest.set(event.job.jobId, event.job);
        }
        // lastOffset() counts transaction markers, which are never delivered as messages.
        const end = remaining.get(batch.partition);
        if (end !== undefined && Number(batch.lastOffset()) + 1 >= end) remaining.delete(batch.partition);
        lastProgress = Date.now();
      },
    });
    // Done when every partition reached its end, or, when a partition ends with a transaction
    // marker that no batch reports, when nothing more has come for a while.
    while (remaining.size > 0 && Date.now() - lastProgress < 2_000) await new Promise((r) => setTimeout(r, 50));
    await consumer.disconnect();
    const cleanup = kafka.admin();
    try {
      await cleanup.connect();
      await cleanup.deleteGroups([groupId]);
    } catch (err) {
      this.log.debug({ err, groupId }, 'read group not deleted (Kafka drops an empty group with no offsets itself)');
    } finally {
      await cleanup.disconnect().catch(() => undefined);
    }
    return latest;
  }
}

function mergeParameters(defaults: JobParametersInput, o: Record<string, unknown>): Parameters | RowError {
  const num = (k: string, v: unknown, integer = false, range?: [number, number]): number | RowError | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      return {
        code: 'INPUT_WRONG_TYPE',
        message: `${k} must be ${integer ? 'a whole number' : 'a number'}, got ${JSON.stringify(v)}`,
      };
    }
    // Refused here with the row's line, not by the provider as a 400 after a wait in the lane.
    if (range && (v < range[0] || v > range[1])) {
      return { code: 'INPUT_OUT_OF_RANGE', message: `${k} must be from ${range[0]} to ${range[1]}, got ${v}` };
    }
    return v;
  };
  const maxTokens = num('max_tokens', o['max_tokens'] ?? o['max_completion_tokens'], true, [1, 1_000_000]);
  const temperature = num('temperature', o['temperature'], false, [0, 2]);
  const topP = num('top_p', o['top_p'], false, [0, 1]);
  const seed = num('seed', o['seed'], true);
  for (const v of [maxTokens, temperature, topP, seed]) if (typeof v === 'object') return v;
  let stop: string[] | null = defaults.stop ?? null;
  if (o['stop'] !== undefined && o['stop'] !== null) {
    const s = o['stop'];
    if (typeof s === 'string') stop = [s];
    else if (Array.isArray(s) && s.every((x) => typeof x === 'string')) stop = s;
    else return { code: 'INPUT_WRONG_TYPE', message: 'stop must be a string or an array of strings' };
  }
  const rf = o['response_format'] ?? defaults.responseFormat;
  return {
    temperature: (temperature as number | undefined) ?? defaults.temperature ?? null,
    topP: (topP as number | undefined) ?? defaults.topP ?? null,
    maxTokens: (maxTokens as number | undefined) ?? defaults.maxTokens ?? null,
    responseFormat: rf === undefined ? null : JSON.stringify(rf),
    stop,
    seed: (seed as number | undefined) ?? defaults.seed ?? null,
    extra: null,
  };
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

function cancelledDuringUpload(jobId: string, committedRows: number): SluiceError {
  return new SluiceError(
    'JOB_NOT_OPEN',
    `job ${jobId} was cancelled during this upload; ${committedRows} rows were committed before the cancel ` +
      'and end as cancelled, the rest were not added',
    { context: { committedRows } },
  );
}

/** Deletes KEYS[1] if it still holds ARGV[1] (ours, not a later claim). */
const deleteIfScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** A digest of a create request, its keys in a fixed order: the same request, the same digest. */
function requestFingerprint(input: CreateJobInput): string {
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, stable((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(stable(input)))
    .digest('hex')
    .slice(0, 32);
}
