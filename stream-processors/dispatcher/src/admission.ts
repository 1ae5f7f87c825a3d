import type { Redis } from 'ioredis';
import { redisKeys, viewReadyKey } from '@sluice/job-store';
import type { DeadLetterReason, Logger } from '@sluice/kafka';
import type { PromptRequest } from '@sluice/schemas';

/** What becomes of a lane record, from what its job's view says. */
export type Verdict =
  | { kind: 'call' }
  | { kind: 'cancelled' }
  /** Its job has ended: its row has its outcome already (a record read again after a restart). */
  | { kind: 'ended' }
  | { kind: 'dead-letter'; reason: DeadLetterReason; message: string }
  /** The view cannot say yet (Redis lost its data and the API has not rebuilt it). */
  | { kind: 'wait'; why: string };

/** The fields of a job's view that decide whether a record of it is taken. */
interface JobFacts {
  status: string;
  tenant?: string;
  total?: number | null;
  model?: string;
}

const ended = new Set(['completed', 'completed_with_errors', 'failed']);
/** Rows are numbered in 32 bits (the sink's row sets). */
const maxRows = 2 ** 32;
const cacheMs = 1_000;

/**
 * Checks each lane record against its job, as the ingest API's view in Redis has it: the job
 * exists, the record's tenant is the job's, the row is in [0, total), the model is the job's or
 * one the lane serves. A lane topic is written by other pipelines as well as by the API: a record
 * that fails is a dead letter, never a call (nor an outcome in another tenant's job).
 *
 * While Redis does not answer (within a second), the facts last read, if any, and prompts go on:
 * the check is read again aside, once at a time, so that a cancellation is seen once Redis is back.
 */
export class Admission {
  private readonly jobs = new Map<string, { facts: JobFacts | null; at: number }>();
  /** Whether the last read failed (logged once per episode). */
  private unread = false;
  private reading = false;

  constructor(
    private readonly o: {
      redis: Redis;
      lane: string;
      /** Models the lane serves besides each job's own ('*': any); undefined: the job's only. */
      models: readonly string[] | undefined;
      log: Logger;
    },
  ) {}

  async check(r: PromptRequest): Promise<Verdict> {
    let job = await this.factsOf(r.jobId);
    if (job === undefined) return { kind: 'call' };
    if (job === null) {
      // Asked of Redis each time (a view marked whole a moment ago may have been lost since), and
      // then the job read again: the view is marked whole only after every job is in it, so a
      // read after the mark is the one that can say the job does not exist.
      if (!(await this.viewReady()))
        return { kind: 'wait', why: 'the job view in Redis is not built (sluice:view:ready is missing)' };
      job = await this.read(r.jobId);
      if (job === undefined) return { kind: 'call' };
      if (job === null) return { kind: 'dead-letter', reason: 'JOB_UNKNOWN', message: `job ${r.jobId} does not exist` };
    }
    if (job.tenant !== r.tenant)
      return {
        kind: 'dead-letter',
        reason: 'TENANT_MISMATCH',
        message: `the record names tenant "${r.tenant}", which job ${r.jobId} is not of`,
      };
    const total = job.total ?? maxRows;
    if (!Number.isInteger(r.rowIndex) || r.rowIndex < 0 || r.rowIndex >= Math.min(total, maxRows))
      return {
        kind: 'dead-letter',
        reason: 'ROW_OUT_OF_RANGE',
        message: `row ${r.rowIndex} is outside [0, ${Math.min(total, maxRows)}) of job ${r.jobId}`,
      };
    if (r.model !== job.model && !this.o.models?.includes('*') && !this.o.models?.includes(r.model))
      return {
        kind: 'dead-letter',
        reason: 'MODEL_NOT_ALLOWED',
        message:
          `model "${r.model}" is neither job ${r.jobId}'s (${job.model ?? 'none'}) nor one lane ` +
          `${this.o.lane} serves (${this.o.models?.join(', ') || 'none configured: SLUICE_MODELS'})`,
      };
    // After the record's own checks: a bad record of an ended job is still a dead letter.
    if (job.status === 'cancelled') return { kind: 'cancelled' };
    if (ended.has(job.status)) return { kind: 'ended' };
    return { kind: 'call' };
  }

  /** The job's facts; null: no such job; undefined: Redis does not answer and none are cached. */
  private async factsOf(jobId: string): Promise<JobFacts | null | undefined> {
    const cached = this.jobs.get(jobId);
    if (cached && Date.now() - cached.at < cacheMs) return cached.facts;
    if (this.unread) {
      if (!this.reading) {
        this.reading = true;
        void this.read(jobId).finally(() => (this.reading = false));
      }
      return cached?.facts ?? undefined;
    }
    return this.read(jobId);
  }

  private async read(jobId: string): Promise<JobFacts | null | undefined> {
    let raw: string | null;
    try {
      raw = await withinSecond(this.o.redis.get(redisKeys.job(jobId)));
    } catch (err) {
      if (!this.unread) this.o.log.warn({ err, lane: this.o.lane, jobId }, 'job status unread (Redis); prompts go on');
      this.unread = true;
      return this.jobs.get(jobId)?.facts ?? undefined;
    }
    if (this.unread) this.o.log.info({ lane: this.o.lane }, 'job status read again');
    this.unread = false;
    const facts = raw ? (JSON.parse(raw) as JobFacts) : null;
    if (this.jobs.size >= 10_000) {
      const old = Date.now() - cacheMs;
      for (const [id, e] of this.jobs) if (e.at < old) this.jobs.delete(id);
    }
    this.jobs.set(jobId, { facts, at: Date.now() });
    return facts;
  }

  private async viewReady(): Promise<boolean> {
    return (await withinSecond(this.o.redis.exists(viewReadyKey)).catch(() => 0)) === 1;
  }
}

async function withinSecond<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('Redis did not answer within 1000 ms')), 1_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
