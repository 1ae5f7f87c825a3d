import type { Redis } from 'ioredis';
import type { Announcer } from '@sluice/announcer';
import { JobView, writeSinkCounts } from '@sluice/job-store';
import type { CrashPoint } from '@sluice/errors';
import { type Logger, type Producer, type SluiceKafka, jobsTopicSpec } from '@sluice/kafka';
import type { ObjectStore } from '@sluice/object-store';
import type { Job, SchemaCodecs } from '@sluice/schemas';
import { Finalizer } from './finalizer.js';
import { JobWriter } from './job-writer.js';
import { JobsFollower } from './jobs-follower.js';
import { defaultPrices, type PriceTable } from './manifest.js';
import { Reconciler } from './reconciler.js';

export interface SinkOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  redis: Redis;
  store: ObjectStore;
  announcer: Announcer;
  log: Logger;
  /** Prepended to every object name. @default "" */
  prefix?: string;
  /** @default 10000 */
  partRecords?: number;
  /** @default 64 MiB */
  partBytes?: number;
  /** @default 2000 */
  flushMs?: number;
  /** A job index roll-up every this many committed parts. @default 64 */
  rollupParts?: number;
  /** A consumer with no fetch for this long is replaced (kafkajs can hang after connection resets). @default 45000 */
  consumerStallMs?: number;
  /** A sealed job with prompts missing and no outcome for this long has them closed as PIPELINE_TIMEOUT. @default 6 h */
  pipelineTimeoutMs?: number;
  /** How long a finalized job's results topic is kept. @default 7 days */
  retentionMs?: number;
  /** Jobs written at once by this process; more wait their turn. @default 256 */
  maxActiveJobs?: number;
  /**
   * An open job whose writer has taken nothing for this long gives its slot to a job waiting for
   * one, and waits in turn itself: jobs never sealed cannot hold every slot. @default 60000
   */
  idleWriterMs?: number;
  /** @default defaultPrices */
  prices?: PriceTable;
  /** @default sluice-sink */
  groupId?: string;
  /** How often the reconciler and the retention sweep run. @default 10000 */
  sweepMs?: number;
  /** Only jobs of these tenants, for a sink dedicated to some tenants. @default all tenants */
  tenants?: string[] | null;
  /** The fault suite's crash point (SLUICE_CRASH_POINT); absent in normal runs. */
  crash?: CrashPoint;
}

interface Known {
  job: Job;
  partition: number;
}

/**
 * The sink: follows sluice.jobs (a consumer group shared by the sink replicas, so that each job is
 * one replica's) and, for every job not finalized, runs a JobWriter over its results topic. When
 * every prompt of a job is accounted for it writes manifest.json, announces the job (Pub/Sub,
 * webhook) and records the final state on sluice.jobs. A reconciler closes prompts missing past a
 * deadline; results topics are deleted a retention period after their job is finalized.
 */
export class Sink {
  private readonly o: Required<Omit<SinkOptions, 'crash'>> & { crash?: CrashPoint };
  private readonly follower: JobsFollower;
  private readonly finalizer: Finalizer;
  private readonly reconciler: Reconciler;
  private readonly producer: Producer;
  private readonly view: JobView;
  private readonly known = new Map<string, Known>();
  private readonly writers = new Map<string, JobWriter>();
  private readonly finalizing = new Set<string>();
  private readonly pending = new Set<string>();
  private tick: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Jobs finalized by this process (for tests and logs). */
  readonly finalized: string[] = [];
  /** Consumers replaced after a hang: sluice.jobs's and every job writer's. */
  consumerReplacements = 0;
  /** Idle open jobs whose writers gave their slots to waiting jobs. */
  parked = 0;

  constructor(options: SinkOptions) {
    this.o = {
      prefix: '',
      partRecords: 10_000,
      partBytes: 64 * 1024 * 1024,
      flushMs: 2_000,
      rollupParts: 64,
      consumerStallMs: 45_000,
      pipelineTimeoutMs: 6 * 3_600_000,
      retentionMs: 7 * 86_400_000,
      maxActiveJobs: 256,
      idleWriterMs: 60_000,
      prices: defaultPrices,
      groupId: 'sluice-sink',
      sweepMs: 10_000,
      tenants: null,
      ...options,
    };
    const { kafka, codecs, redis, log } = options;
    const producer = (this.producer = kafka.producer({ ordered: true }));
    this.view = new JobView(redis);
    this.follower = new JobsFollower({
      kafka,
      codecs,
      groupId: this.o.groupId,
      stallMs: this.o.consumerStallMs,
      tenants: this.o.tenants,
      log,
      onJob: (job, partition) => {
        this.known.set(job.jobId, { job, partition });
        this.pending.add(job.jobId);
      },
      onAssigned: (partitions) => this.assign(partitions),
      onReplaced: () => this.consumerReplacements++,
    });
    const { store, announcer, prefix, prices, crash, pipelineTimeoutMs, retentionMs } = this.o;
    this.finalizer = new Finalizer({
      store,
      announcer,
      producer,
      codecs,
      redis,
      view: this.view,
      log,
      prefix,
      prices,
      crash,
    });
    this.reconciler = new Reconciler({ kafka, producer, codecs, log, pipelineTimeoutMs, retentionMs });
  }

  /** Group joins of the sink's consumer (1 after start; more means rebalances). */
  get joins(): number {
    return this.follower.joins;
  }

  /** Jobs on partitions now another replica's are left to it. */
  private assign(mine: Set<number>): void {
    for (const [jobId, k] of this.known) {
      if (mine.has(k.partition)) continue;
      this.known.delete(jobId);
      this.pending.delete(jobId);
      const w = this.writers.get(jobId);
      if (w) {
        this.writers.delete(jobId);
        void w.stop();
      }
    }
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([jobsTopicSpec()]);
    await this.producer.connect();
    await this.follower.start();
    // Events are acted on in a tick, on the latest state of each job, so that a replay of a job's
    // history does not start a writer for a job that a later event says is finalized.
    this.tick = setInterval(() => this.act(), 100);
    this.sweeper = setInterval(
      () => void this.sweep().catch((err: unknown) => this.o.log.warn({ err }, 'sweep failed')),
      this.o.sweepMs,
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.tick) clearInterval(this.tick);
    if (this.sweeper) clearInterval(this.sweeper);
    await this.follower.stop();
    await Promise.all([...this.writers.values()].map((w) => w.stop()));
    this.writers.clear();
    await this.producer.disconnect();
  }

  /** Jobs this process writes now. */
  get activeJobs(): string[] {
    return [...this.writers.keys()];
  }

  private act(): void {
    if (this.stopping) return;
    for (const jobId of [...this.pending]) {
      const k = this.known.get(jobId);
      if (!k) {
        this.pending.delete(jobId);
        continue;
      }
      const { job } = k;
      const writer = this.writers.get(jobId);
      if (job.finalizedAt !== null) {
        this.pending.delete(jobId);
        if (writer) {
          this.writers.delete(jobId);
          void writer.stop();
        }
        continue;
      }
      if (writer) {
        this.pending.delete(jobId);
        writer.update(job);
        continue;
      }
      // Stays pending until a slot frees, or an idle open job gives up its own.
      if (this.writers.size >= this.o.maxActiveJobs && !this.parkIdleWriter()) continue;
      this.pending.delete(jobId);
      this.startWriter(job);
    }
  }

  /**
   * Stops the writer of the open job idle longest (idle for `idleWriterMs` at least), and puts the
   * job at the back of the line: what its writer took is committed, and what comes later waits in
   * its results topic. Sealed jobs keep their writers (they end, by the pipeline timeout at worst).
   */
  private parkIdleWriter(): boolean {
    const t = Date.now();
    let idlest: JobWriter | undefined;
    for (const [jobId, w] of this.writers) {
      if (w.job.status !== 'open' || this.finalizing.has(jobId) || t - w.lastProgressAt < this.o.idleWriterMs) continue;
      if (!idlest || w.lastProgressAt < idlest.lastProgressAt) idlest = w;
    }
    if (!idlest) return false;
    const jobId = idlest.job.jobId;
    this.writers.delete(jobId);
    this.parked++;
    void idlest.stop().finally(() => {
      if (!this.stopping) this.pending.add(jobId);
    });
    this.o.log.info(
      { jobId, idleMs: t - idlest.lastProgressAt },
      "an open job's idle writer gave its slot to a job waiting for one",
    );
    return true;
  }

  private startWriter(job: Job): void {
    const writer = new JobWriter({
      kafka: this.o.kafka,
      codecs: this.o.codecs,
      store: this.o.store,
      log: this.o.log,
      job,
      prefix: this.o.prefix,
      partRecords: this.o.partRecords,
      partBytes: this.o.partBytes,
      flushMs: this.o.flushMs,
      rollupParts: this.o.rollupParts,
      consumerStallMs: this.o.consumerStallMs,
      onConsumerReplaced: () => this.consumerReplacements++,
      crash: this.o.crash,
      onProgress: (w) => void this.progress(w),
      onFailed: (w, err) => {
        this.o.log.error({ err, jobId: w.job.jobId }, 'job writer failed; starting it afresh');
        if (this.writers.get(w.job.jobId) !== w) return;
        this.writers.delete(w.job.jobId);
        void w.stop().then(() => {
          if (!this.stopping) this.pending.add(w.job.jobId);
        });
      },
    });
    this.writers.set(job.jobId, writer);
    writer.start().then(
      () => void this.progress(writer),
      (err: unknown) => {
        this.o.log.error({ err, jobId: job.jobId }, 'job writer could not start; trying again');
        if (this.writers.get(job.jobId) === writer) this.writers.delete(job.jobId);
        void writer.stop();
        setTimeout(() => !this.stopping && this.pending.add(job.jobId), 2_000);
      },
    );
  }

  /** Progress counters for the API, and finalization once every prompt is accounted for. */
  private async progress(w: JobWriter): Promise<void> {
    const jobId = w.job.jobId;
    await writeSinkCounts(this.o.redis, jobId, {
      succeeded: w.totals.succeeded,
      failed: w.totals.failed + w.totals.cancelled,
      written: w.committedRows,
    }).catch(() => undefined);
    if (!w.complete || this.finalizing.has(jobId) || this.writers.get(jobId) !== w) return;
    this.finalizing.add(jobId);
    try {
      await this.finalizer.finalize(w);
      if (this.writers.get(jobId) === w) this.writers.delete(jobId);
      this.finalized.push(jobId);
    } catch (err) {
      this.o.log.error({ err, jobId }, 'job could not be finalized; trying again');
      setTimeout(() => void this.progress(w), 2_000);
    } finally {
      this.finalizing.delete(jobId);
    }
  }

  /** The reconciler and the retention sweep. */
  private async sweep(): Promise<void> {
    await this.reconciler.closeStale(this.writers.values());
    const expired = await this.reconciler.expire([...this.known.values()].map((k) => k.job));
    for (const job of expired) this.known.delete(job.jobId);
  }
}
