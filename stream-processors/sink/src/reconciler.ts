import { promptId, type Logger, type Producer, type SluiceKafka } from '@sluice/kafka';
import type { Job, PromptOutcome, SchemaCodecs } from '@sluice/schemas';
import type { JobWriter } from './job-writer.js';

export interface ReconcilerOptions {
  kafka: SluiceKafka;
  producer: Producer;
  codecs: SchemaCodecs;
  log: Logger;
  /** See SinkOptions.pipelineTimeoutMs. */
  pipelineTimeoutMs: number;
  /** See SinkOptions.retentionMs. */
  retentionMs: number;
}

/**
 * The sink's sweeps: prompts a sealed job still misses past the pipeline timeout are closed with
 * an explicit error (so the job ends), and the results topics of jobs finalized longer ago than
 * the retention period are deleted.
 */
export class Reconciler {
  constructor(private readonly o: ReconcilerOptions) {}

  /** Closes the missing prompts of every writer whose job has made no progress for the timeout. */
  async closeStale(writers: Iterable<JobWriter>): Promise<void> {
    const now = Date.now();
    for (const w of writers) {
      const expected = w.expected;
      if (expected === null || w.complete || now - w.lastProgressAt < this.o.pipelineTimeoutMs) continue;
      await this.closeMissing(w, expected);
    }
  }

  /** Deletes the results topics of the jobs finalized past retention; returns those jobs. */
  async expire(jobs: Iterable<Job>): Promise<Job[]> {
    const now = Date.now();
    const expired = [...jobs].filter((j) => j.finalizedAt !== null && now - j.finalizedAt >= this.o.retentionMs);
    if (expired.length === 0) return [];
    const admin = this.o.kafka.admin();
    await admin.connect();
    try {
      const topics = new Set(await admin.listTopics());
      const gone = expired.filter((j) => topics.has(j.resultsTopic)).map((j) => j.resultsTopic);
      if (gone.length > 0) {
        await admin.deleteTopics({ topics: gone });
        this.o.log.info({ topics: gone.length }, 'results topics of finalized jobs deleted after retention');
      }
    } finally {
      await admin.disconnect();
    }
    return expired;
  }

  /** Closes the prompts a job still misses with an explicit error, through its results topic. */
  private async closeMissing(w: JobWriter, expected: number): Promise<void> {
    const job = w.job;
    const missing = w.seen.missing(expected);
    if (missing.length === 0) return;
    w.lastProgressAt = Date.now(); // once per timeout period
    this.o.log.warn({ jobId: job.jobId, missing: missing.length }, 'prompts missing past the deadline; closing them');
    const completedAt = Date.now();
    const message = `no outcome arrived within ${Math.round(this.o.pipelineTimeoutMs / 1_000)} s of the job's last progress`;
    for (let i = 0; i < missing.length; i += 1_000) {
      await this.o.producer.send({
        topic: job.resultsTopic,
        acks: -1,
        messages: missing.slice(i, i + 1_000).map((row) => {
          const outcome: PromptOutcome = {
            jobId: job.jobId,
            promptId: promptId(job.jobId, row),
            rowIndex: row,
            tenant: job.tenant,
            customId: null,
            status: 'failed',
            result: null,
            error: { code: 'PIPELINE_TIMEOUT', message, lineNumber: null },
            attempts: 0,
            attemptHistory: [],
            completedAt,
          };
          return { key: job.jobId, value: this.o.codecs.promptOutcome.encodeSync(outcome) };
        }),
      });
    }
  }
}
