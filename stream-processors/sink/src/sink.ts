import type { Redis } from 'ioredis';
import type { Announcement, Announcer } from '@sluice/announcer';
import { JobView, redisKeys, releasePlacement } from '@sluice/job-store';
import type { CrashPoint } from '@sluice/errors';
import {
  jobsTopic,
  jobsTopicSpec,
  promptId,
  replaceHungConsumer,
  watchConsumer,
  type Consumer,
  type Logger,
  type Producer,
  type SluiceKafka,
} from '@sluice/kafka';
import { jobObjectPrefix, manifestName as manifestOf, ObjectExistsError, type ObjectStore } from '@sluice/object-store';
import type { Job, JobEvent, PromptOutcome, SchemaCodecs } from '@sluice/schemas';
import { JobWriter } from './job-writer.js';
import { buildManifest, defaultPrices, type Manifest, type PriceTable } from './manifest.js';

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
  private consumer: Consumer | undefined;
  private generation = 0;
  private unwatch: (() => void) | undefined;
  private readonly producer: Producer;
  private readonly view: JobView;
  private readonly known = new Map<string, Known>();
  private readonly writers = new Map<string, JobWriter>();
  private readonly finalizing = new Set<string>();
  private readonly pending = new Set<string>();
  private assigned = new Set<number>();
  private tick: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Jobs finalized by this process (for tests and logs). */
  readonly finalized: string[] = [];
  /** Consumers replaced after a hang: sluice.jobs's and every job writer's. */
  consumerReplacements = 0;
  /** Group joins of the sink's consumer (1 after start; more means rebalances). */
  joins = 0;
  /** Idle open jobs whose writers gave their slots to waiting jobs. */
  parked = 0;

  constructor(options: SinkOptions) {
    this.o = {
      prefix: '',
      partRecords: 10_000,
      partBytes: 64 * 1024 * 1024,
      flushMs: 2_000,
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
    this.producer = options.kafka.producer({ ordered: true });
    this.view = new JobView(options.redis);
  }

  async start(): Promise<void> {
    await this.o.kafka.ensureTopics([jobsTopicSpec()]);
    await this.producer.connect();
    await this.startJobsConsumer();
    // Events are acted on in a tick, on the latest state of each job, so that a replay of a job's
    // history does not start a writer for a job that a later event says is finalized.
    this.tick = setInterval(() => this.act(), 100);
    this.sweeper = setInterval(
      () => void this.sweep().catch((err: unknown) => this.o.log.warn({ err }, 'sweep failed')),
      this.o.sweepMs,
    );
  }

  /**
   * Follows sluice.jobs in the sink's group. A consumer found hung (kafkajs after connection
   * resets) is replaced by a new member of the group; the old one's events, should it wake, are
   * dropped by the generation check.
   */
  private async startJobsConsumer(): Promise<void> {
    const generation = ++this.generation;
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      // A replica killed without leaving holds its jobs until this runs out.
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      maxWaitTimeInMs: 200,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      if (generation !== this.generation) return;
      this.joins++;
      const mine = new Set(payload.memberAssignment[jobsTopic] ?? []);
      this.assigned = mine;
      // Jobs on partitions now another replica's are left to it.
      for (const [jobId, k] of this.known) {
        if (!mine.has(k.partition)) {
          this.known.delete(jobId);
          this.pending.delete(jobId);
          const w = this.writers.get(jobId);
          if (w) {
            this.writers.delete(jobId);
            void w.stop();
          }
        }
      }
    });
    await consumer.connect();
    // Never committed: every replica reads its partitions of the compacted topic from the start,
    // which gives it the state of each of its jobs.
    await consumer.subscribe({ topic: jobsTopic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (generation !== this.generation) return;
          if (!m.value) continue;
          let event: JobEvent;
          try {
            event = await this.o.codecs.jobEvent.decode(m.value);
          } catch (err) {
            this.o.log.error({ err, partition: batch.partition, offset: m.offset }, 'job event could not be decoded');
            continue;
          }
          if (this.o.tenants && !this.o.tenants.includes(event.job.tenant)) continue;
          this.known.set(event.job.jobId, { job: event.job, partition: batch.partition });
          this.pending.add(event.job.jobId);
        }
      },
    });
    this.unwatch?.();
    this.unwatch = watchConsumer(consumer, {
      stallMs: this.o.consumerStallMs,
      onStall: ({ idleMs, lastEvent }) => {
        if (this.stopping || generation !== this.generation) return;
        this.o.log.warn({ idleMs, lastEvent }, `${jobsTopic} consumer hung (no fetch); replacing it`);
        this.consumerReplacements++;
        void replaceHungConsumer(consumer, {
          start: () => this.startJobsConsumer(),
          running: () => !this.stopping,
          log: this.o.log,
          what: `${jobsTopic} consumer`,
        });
      },
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    if (this.tick) clearInterval(this.tick);
    if (this.sweeper) clearInterval(this.sweeper);
    await this.consumer?.disconnect();
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
    await this.o.redis
      .hset(redisKeys.counts(jobId), {
        succeeded: w.totals.succeeded,
        failed: w.totals.failed + w.totals.cancelled,
        written: w.committedRows,
      })
      .catch(() => undefined);
    if (!w.complete || this.finalizing.has(jobId) || this.writers.get(jobId) !== w) return;
    this.finalizing.add(jobId);
    try {
      await this.finalize(w);
    } catch (err) {
      this.o.log.error({ err, jobId }, 'job could not be finalized; trying again');
      setTimeout(() => void this.progress(w), 2_000);
    } finally {
      this.finalizing.delete(jobId);
    }
  }

  private async finalize(w: JobWriter): Promise<void> {
    const job = w.job;
    await w.stop();
    const base = jobObjectPrefix(this.o.prefix, job.jobId);
    // Files no committed part names are a crashed writer's left-overs.
    const referenced = new Set(w.indexes.flatMap((i) => [i.results?.name, i.errors?.name]));
    for (const kind of ['results/', 'errors/']) {
      for (const name of await this.o.store.list(base + kind)) {
        if (!referenced.has(name)) await this.o.store.delete(name);
      }
    }
    const manifestName = manifestOf(this.o.prefix, job.jobId);
    let manifest = buildManifest(w, (n) => this.o.store.uri(n), this.o.prices);
    try {
      await this.o.store.put(manifestName, JSON.stringify(manifest, null, 2) + '\n', {
        ifAbsent: true,
        contentType: 'application/json',
      });
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      // An earlier run wrote it and stopped before announcing: its manifest stands.
      manifest = JSON.parse((await this.o.store.get(manifestName))!.toString()) as Manifest;
    }
    const manifestUri = this.o.store.uri(manifestName);
    const notifications = JSON.parse(job.notifications || '{}') as { pubsubTopic?: string; webhookUrl?: string };
    await this.announceOnce(job, base, notifications, {
      jobId: job.jobId,
      tenant: job.tenant,
      // Lower case, as the job view says it (a manifest written before 2026-12 says it in upper case).
      status: manifest.status.toLowerCase(),
      manifestUri,
      counts: {
        total: manifest.counts.total,
        succeeded: manifest.counts.succeeded,
        failed: manifest.counts.failed + manifest.counts.invalid,
        cancelled: manifest.counts.cancelled,
      },
      finishedAt: manifest.timings.finalizedAt,
    });
    const now = Date.now();
    const final: Job = {
      ...job,
      status: manifest.status.toLowerCase(),
      finalizedAt: now,
      manifestUri,
      updatedAt: now,
    };
    const event: JobEvent = { type: 'finalized', at: now, job: final };
    await this.producer.send({
      topic: jobsTopic,
      acks: -1,
      messages: [{ key: job.jobId, value: this.o.codecs.jobEvent.encodeSync(event) }],
    });
    await this.view.put(final);
    // Its partitions are free for new jobs (they landed behind finished backfills).
    await releasePlacement(this.o.redis, job.provider, job.jobId, job.partitions).catch((err: unknown) =>
      this.o.log.warn({ err, jobId: job.jobId }, 'lane placement not released'),
    );
    if (this.writers.get(job.jobId) === w) this.writers.delete(job.jobId);
    this.finalized.push(job.jobId);
    this.o.log.info(
      { jobId: job.jobId, tenant: job.tenant, status: manifest.status, total: manifest.counts.total },
      'job finalized and announced',
    );
  }

  /**
   * Announces a job once, whatever crashes between the announcement and the `finalized` event:
   * an object beside the manifest notes "announcing" before and "announced" after, and a witness
   * subscription opened before the announcement tells, after a crash between the two notes,
   * whether it went out. (A webhook has no such witness: after a crash in that window it is
   * posted again, with the same x-sluice-job-id.)
   */
  private async announceOnce(
    job: Job,
    base: string,
    target: { pubsubTopic?: string; webhookUrl?: string },
    a: Announcement,
  ): Promise<void> {
    const noteName = `${base}announcement.json`;
    const note = async (state: 'announcing' | 'announced', ifAbsent: boolean) =>
      this.o.store.put(noteName, JSON.stringify({ state, at: new Date().toISOString() }) + '\n', {
        ifAbsent,
        contentType: 'application/json',
      });
    const raw = await this.o.store.get(noteName);
    const was = raw ? (JSON.parse(raw.toString()) as { state: string }).state : undefined;
    if (was === 'announced') return;
    const witness = this.o.announcer.witness(job.jobId, target);
    if (was === undefined) {
      await witness.open();
      await note('announcing', true).catch((err: unknown) => {
        if (!(err instanceof ObjectExistsError)) throw err;
      });
    } else if (await witness.saw()) {
      // Announced before a crash that came before the note said so.
      this.o.log.info({ jobId: job.jobId }, 'announcement found sent before a restart; not sent again');
      await note('announced', false);
      await witness.close();
      return;
    }
    const announced = await this.o.announcer.announce(a, target);
    this.o.crash?.reached('sink.after-announce');
    if (announced.webhookError) {
      this.o.log.warn(
        { jobId: job.jobId, err: announced.webhookError },
        'webhook not delivered; the job is announced on Pub/Sub',
      );
    }
    await note('announced', false);
    await witness.close();
  }

  /** The reconciler and the retention sweep. */
  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const w of this.writers.values()) {
      const expected = w.expected;
      if (expected === null || w.complete || now - w.lastProgressAt < this.o.pipelineTimeoutMs) continue;
      await this.closeMissing(w, expected);
    }
    const expired = [...this.known.values()].filter(
      (k) => k.job.finalizedAt !== null && now - k.job.finalizedAt >= this.o.retentionMs,
    );
    if (expired.length === 0) return;
    const admin = this.o.kafka.admin();
    await admin.connect();
    try {
      const topics = new Set(await admin.listTopics());
      const gone = expired.filter((k) => topics.has(k.job.resultsTopic)).map((k) => k.job.resultsTopic);
      if (gone.length > 0) {
        await admin.deleteTopics({ topics: gone });
        this.o.log.info({ topics: gone.length }, 'results topics of finalized jobs deleted after retention');
      }
    } finally {
      await admin.disconnect();
    }
    for (const k of expired) this.known.delete(k.job.jobId);
  }

  /** Closes the prompts a job still misses with an explicit error, through its results topic. */
  private async closeMissing(w: JobWriter, expected: number): Promise<void> {
    const job = w.job;
    const missing = w.seen.missing(expected);
    if (missing.length === 0) return;
    w.lastProgressAt = Date.now(); // once per timeout period
    this.o.log.warn({ jobId: job.jobId, missing: missing.length }, 'prompts missing past the deadline; closing them');
    const completedAt = Date.now();
    for (let i = 0; i < missing.length; i += 1_000) {
      await this.producer.send({
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
            error: {
              code: 'PIPELINE_TIMEOUT',
              message: `no outcome arrived within ${Math.round(this.o.pipelineTimeoutMs / 1_000)} s of the job's last progress`,
              lineNumber: null,
            },
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
