import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { SluiceError } from '@sluice/errors';
import type { JobView } from '@sluice/job-store';
import {
  jobsTopic,
  messageBytes,
  promptId,
  splitByBytes,
  type Message as KafkaMessage,
  type Producer,
  type SluiceKafka,
  type Transaction,
} from '@sluice/kafka';
import type { Job, JobEvent, PromptOutcome, SchemaCodecs } from '@sluice/schemas';
import type { IngestConfig } from '../config.js';
import { HashedIdSet } from '../input/id-set.js';
import { readInput, type InputFormat, type InputItem } from '../input/reader.js';
import type { RowError } from '../input/row.js';
import { toPromptRequest, type JobParametersInput } from './row-request.js';
import type { Tenancy } from './tenancy.js';

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

export interface UploadDeps {
  kafka: SluiceKafka;
  redis: Redis;
  codecs: SchemaCodecs;
  config: IngestConfig;
  view: JobView;
  tenancy: Tenancy;
  /** The upload's transactional producer (connected: a transaction a crashed upload left is aborted). */
  producer: Producer;
  /** Keys of the job's upload lock and of its chunk-in-flight marker, and how long the lock lasts. */
  lockKey: string;
  pendingKey: string;
  lockMs: number;
}

/** What one chunk (one transaction) gathers before it is committed. */
interface Chunk {
  lanes: KafkaMessage[];
  outcomes: KafkaMessage[];
  accepted: number;
  invalid: number;
  bytes: number;
}

const emptyChunk = (): Chunk => ({ lanes: [], outcomes: [], accepted: 0, invalid: 0, bytes: 0 });

/**
 * One upload to one job, written in Kafka transactions of `chunkRows` rows (or `chunkBytes`; the
 * first ones smaller, from `firstChunkRows`):
 * each carries the chunk's prompts, its rows' error outcomes and a job event with the new counts,
 * so that what the job counts and what is in Kafka never differ, even when the upload or the API
 * dies midway. An upload that resumes one cut off skips the rows that one committed, after
 * checking that it starts with the same rows.
 */
export class UploadWriter {
  private job: Job;
  private readonly resumedFrom: number;
  /** A digest of the rows as read, in order: each commit records it for the rows committed. */
  private readonly prefix: Hash = createHash('sha256');
  private prefixChecked: boolean;
  private rowIndex = 0;
  private accepted = 0;
  private invalid = 0;
  private readonly errors: UploadSummary['errors'] = [];
  private readonly customIds = new HashedIdSet();
  private chunk = emptyChunk();
  /** Transactions this upload committed: its first chunks are small, so that calls start early. */
  private commits = 0;
  private readonly parameters: JobParametersInput;
  private readonly models: string[];
  private readonly submittedAt = Date.now();
  /** What one record batch of the lane and of the results topic may hold, as the broker says. */
  private laneMax = 0;
  private resultsMax = 0;

  constructor(
    private readonly d: UploadDeps,
    job: Job,
  ) {
    this.job = job;
    this.resumedFrom = job.accepted + job.invalid;
    this.prefixChecked = this.resumedFrom === 0 || job.inputDigest === null;
    this.parameters = JSON.parse(job.parameters) as JobParametersInput;
    this.models = d.config.models[job.provider] ?? [];
  }

  /** Rows of the job committed so far (by this upload and those before it). */
  get committedRows(): number {
    return this.job.accepted + this.job.invalid;
  }

  /** The job as last committed. */
  get current(): Job {
    return this.job;
  }

  async run(body: Readable, format: InputFormat): Promise<UploadSummary> {
    const { config: c, kafka, tenancy, redis } = this.d;
    const tenant = this.job.tenant;
    // Sends are split under what a batch may hold, and a prompt record over it is its row's error.
    [this.laneMax, this.resultsMax] = await Promise.all([
      kafka.maxMessageBytes(this.job.laneTopic),
      kafka.maxMessageBytes(this.job.resultsTopic),
    ]);
    // Rows this upload may add under the tenant's maxOpenRows (refused now when none).
    const rowRoom = await tenancy.rowRoom(tenant, this.job);
    // Read no faster than the tenant's upload rate; the lock is held while it waits.
    const metered = tenancy.meter(tenant, body, async () => void (await redis.pexpire(this.d.lockKey, this.d.lockMs)));
    const limits = { maxLineBytes: c.maxLineBytes, maxFields: c.maxFields, maxMessages: c.maxMessages };
    for await (const item of readInput(metered, format, { ...limits, template: this.job.promptTemplate })) {
      if (this.rowIndex === this.resumedFrom) this.checkPrefix();
      if (this.rowIndex - this.resumedFrom >= rowRoom) {
        // The tenant's open rows are at their limit: the rows before this one are committed,
        // and the same input sent again later resumes after them.
        await this.commit(false);
        throw tenancy.rowsExceeded(tenant, this.job, c.tenants.of(tenant).maxOpenRows);
      }
      this.add(item);
      if (this.chunk.accepted + this.chunk.invalid >= this.chunkRows || this.chunk.bytes >= c.chunkBytes)
        await this.commit(false);
    }
    if (this.rowIndex <= this.resumedFrom) this.checkPrefix(); // the same file with no row more, or a shorter one
    if (this.rowIndex === 0) {
      throw new SluiceError('INPUT_EMPTY', 'the upload has no rows', {
        hint: 'send one JSON object per line (JSONL), a JSON array, or a CSV with a header row and data rows',
      });
    }
    await this.commit(true);
    const { jobId, status, total } = this.job;
    const { accepted, invalid, resumedFrom, errors } = this;
    return { jobId, status, accepted, invalid, resumedFrom, total, errors };
  }

  /** One row read: skipped (committed before), an error outcome, or a prompt for the lane. */
  private add(item: InputItem): void {
    // The row's bytes as sent where the reader has them (JSONL, JSON): hashing a row serialized
    // again cost a tenth of an upload of 2 KB prompts.
    this.prefix.update(item.raw ?? JSON.stringify(item));
    this.prefix.update('\n');
    const customId = item.row?.customId ?? null;
    const duplicate = customId !== null && !this.customIds.add(customId);
    if (this.rowIndex < this.resumedFrom) {
      this.rowIndex++; // committed by an earlier upload of the same input
      return;
    }
    if (duplicate) {
      const message = `custom_id "${customId}" was used by an earlier row`;
      this.fail(item, { code: 'INPUT_DUPLICATE_CUSTOM_ID', message }, customId);
    } else if (item.error) this.fail(item, item.error, item.customId ?? null);
    else this.prompt(item as InputItem & { row: NonNullable<InputItem['row']> }, customId);
    this.rowIndex++;
  }

  private prompt(item: InputItem & { row: NonNullable<InputItem['row']> }, customId: string | null): void {
    const { job, rowIndex } = this;
    const request = toPromptRequest(job, item, rowIndex, this.parameters, this.models, this.submittedAt);
    if ('code' in request) return this.fail(item, request, customId);
    const message = {
      key: job.jobId,
      partition: job.partitions[rowIndex % job.partitions.length]!,
      value: this.d.codecs.promptRequest.encodeSync(request),
    };
    const bytes = messageBytes(message);
    if (bytes > this.laneMax) {
      const text =
        `its prompt record is ${bytes} bytes, more than the ${this.laneMax} bytes of max.message.bytes ` +
        `of ${job.laneTopic}: shorten the prompt, or raise the topic's max.message.bytes`;
      return this.fail(item, { code: 'INPUT_RECORD_TOO_LARGE', message: text }, customId);
    }
    this.chunk.lanes.push(message);
    this.chunk.bytes += bytes;
    this.chunk.accepted++;
    this.accepted++;
  }

  /** The row's error outcome, written with the chunk. */
  private fail(item: { line: number }, error: RowError, customId: string | null): void {
    const { jobId, tenant } = this.job;
    const outcome: PromptOutcome = {
      jobId,
      promptId: promptId(jobId, this.rowIndex),
      rowIndex: this.rowIndex,
      tenant,
      customId,
      status: 'failed',
      result: null,
      error: { code: error.code, message: error.message, lineNumber: item.line },
      attempts: 0,
      attemptHistory: [],
      completedAt: Date.now(),
    };
    this.chunk.outcomes.push({ key: jobId, value: this.d.codecs.promptOutcome.encodeSync(outcome) });
    this.chunk.invalid++;
    this.invalid++;
    if (this.errors.length < 20) this.errors.push({ line: item.line, code: error.code, message: error.message });
  }

  /**
   * An upload that resumes after the rows an earlier one committed must start with those rows:
   * resume is by row count, and another file would otherwise have its first rows skipped silently.
   */
  private checkPrefix(): void {
    if (this.prefixChecked) return;
    this.prefixChecked = true;
    if (this.prefix.copy().digest('hex') === this.job.inputDigest) return;
    const n = this.resumedFrom;
    throw new SluiceError(
      'INPUT_CHANGED',
      `the first ${n} rows of this upload are not the ${n} rows an earlier upload ` +
        `committed to job ${this.job.jobId}: it resumes after them, so it must start with them`,
      {
        hint: 'send the same file again to resume it, or create a new job for a different file',
        context: { committedRows: n },
      },
    );
  }

  /**
   * Rows of the chunk being gathered: `firstChunkRows`, doubling with each commit up to
   * `chunkRows`. A job's prompts reach the dispatcher after its first hundred rows, not after the
   * first 5,000 (seconds of a large upload: an upload of 3,000 rows was one transaction at its end).
   */
  private get chunkRows(): number {
    const c = this.d.config;
    return Math.min(c.chunkRows, Math.max(1, c.firstChunkRows) * 2 ** Math.min(this.commits, 30));
  }

  /** Commits the chunk in one transaction with the job's new counts (and, last, its seal). */
  private async commit(seal: boolean): Promise<void> {
    const { redis, view } = this.d;
    const next: Job = {
      ...this.job,
      accepted: this.job.accepted + this.chunk.accepted,
      invalid: this.job.invalid + this.chunk.invalid,
      updatedAt: Date.now(),
      inputDigest: this.prefix.copy().digest('hex'),
    };
    if (seal) {
      next.status = 'sealed';
      next.total = next.accepted + next.invalid;
    }
    // Marks the chunk in flight: if the process dies between the commit and the view update,
    // the next upload finds the marker and reads the job's committed state from sluice.jobs.
    await redis.set(this.d.pendingKey, String(next.accepted + next.invalid), 'EX', 86_400);
    await this.send(next, seal);
    this.job = next;
    this.chunk = emptyChunk();
    this.commits++;
    // Never over a cancel that came meanwhile (its event follows this chunk's in sluice.jobs).
    if (!(await view.putUnlessEnded(next))) throw cancelledDuringUpload(next.jobId, this.committedRows);
    await redis.del(this.d.pendingKey);
    await redis.pexpire(this.d.lockKey, this.d.lockMs);
  }

  private async send(next: Job, seal: boolean): Promise<void> {
    const event: JobEvent = { type: seal ? 'sealed' : 'input_progress', at: Date.now(), job: next };
    const topicMessages: Array<{ topic: string; messages: KafkaMessage[] }> = [
      { topic: jobsTopic, messages: [{ key: next.jobId, value: this.d.codecs.jobEvent.encodeSync(event) }] },
    ];
    // Each send under a tenth less than a batch may hold, so that no partition's batch is refused
    // as too large ("larger than the max message size the server will accept").
    for (const messages of splitByBytes(this.chunk.lanes, 0.9 * this.laneMax))
      topicMessages.push({ topic: next.laneTopic, messages });
    for (const messages of splitByBytes(this.chunk.outcomes, 0.9 * this.resultsMax))
      topicMessages.push({ topic: next.resultsTopic, messages });
    const txn: Transaction = await this.d.producer.transaction();
    try {
      for (const t of topicMessages) await txn.sendBatch({ topicMessages: [t], acks: -1 });
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw err;
    }
  }
}

export function cancelledDuringUpload(jobId: string, committedRows: number): SluiceError {
  return new SluiceError(
    'JOB_NOT_OPEN',
    `job ${jobId} was cancelled during this upload; ${committedRows} rows were committed before the cancel ` +
      'and end as cancelled, the rest were not added',
    { context: { committedRows } },
  );
}
