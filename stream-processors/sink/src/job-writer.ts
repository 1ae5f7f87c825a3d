import { createHash, randomBytes } from 'node:crypto';
import type { CrashPoint } from '@sluice/errors';
import { ConsumerSupervisor, type Consumer, type Logger, type SluiceKafka } from '@sluice/kafka';
import {
  indexPrefix,
  indexTag,
  jobObjectPrefix,
  maxRow,
  ObjectExistsError,
  partSummary,
  readJobIndex,
  RowSet,
  type Counts,
  type ObjectStore,
  type PartFile,
  type PartIndex,
  type PartSummary,
} from '@sluice/object-store';
import type { Job, PromptOutcome, SchemaCodecs } from '@sluice/schemas';
import { errorLine, isInputError, resultLine } from './output.js';
import { IndexRoller } from './index-roller.js';

export interface JobWriterOptions {
  kafka: SluiceKafka;
  codecs: SchemaCodecs;
  store: ObjectStore;
  log: Logger;
  job: Job;
  /** Prepended to every object name, e.g. "results/". */
  prefix: string;
  /** A part is written once it holds this many records... */
  partRecords: number;
  /** ...or this many bytes... */
  partBytes: number;
  /** ...or has been open this long. */
  flushMs: number;
  /** An index roll-up after this many committed parts (IndexRoller). */
  rollupParts: number;
  /** After each committed part, and when every prompt is accounted for. */
  onProgress: (writer: JobWriter) => void;
  /** A results consumer with no fetch for this long is replaced (kafkajs can hang after resets). */
  consumerStallMs: number;
  /** Told each time a hung consumer is replaced. */
  onConsumerReplaced?: () => void;
  /** The fault suite's crash point; absent in normal runs. */
  crash?: CrashPoint;
  /** The writer cannot go on (a part committed by another writer differs from its own). */
  onFailed: (writer: JobWriter, err: unknown) => void;
}

interface OpenPart {
  start: number;
  end: number;
  results: string[];
  errors: string[];
  rows: number[];
  bytes: number;
  counts: Counts;
  tokens: { prompt: number; completion: number };
  first: number | null;
  last: number | null;
  openedAt: number;
}

/** How long a job's first part gathers results before it is written (see start()). */
const firstPartMs = 250;
const pad = (n: number, width: number) => String(n).padStart(width, '0');
const zero = (): Counts => ({ succeeded: 0, failed: 0, cancelled: 0, invalid: 0 });

/**
 * Writes one job's results topic to the object store: part files flushed by count, bytes or time,
 * the first outcome of each prompt id kept, each part committed by an index object written only
 * if absent. Where to read from comes from the committed indexes, not from consumer offsets: the
 * writer's consumer group is its own (no rebalance of anyone else's group when a job starts), and a
 * restart after a crash reads on from the end of the last committed part.
 */
export class JobWriter {
  job: Job;
  readonly seen = new RowSet();
  /** Rows in committed parts (written and named by an index). */
  private committed = new RowSet();
  /**
   * The committed parts, without their row lists: the RowSets hold those at a bit a row, where
   * the lists took 8 bytes a row for the job's whole life (80 MB for a job of 10 million).
   */
  readonly indexes: PartSummary[] = [];
  readonly totals: Counts = zero();
  readonly tokens = { prompt: 0, completion: 0 };
  committedRows = 0;
  firstCompletedAt: number | null = null;
  lastCompletedAt: number | null = null;
  /** When the last outcome arrived (or the writer started): the reconciler's clock. */
  lastProgressAt = Date.now();
  private consumer: Consumer | undefined;
  /** The groups this writer's consumers joined: deleted when it stops, so that none piles up. */
  private readonly groups: string[] = [];
  private readonly supervisor: ConsumerSupervisor;
  /** Per results partition: the next offset not yet taken into a part. */
  private readonly position = new Map<number, number>();
  private readonly open = new Map<number, OpenPart>();
  private readonly chains = new Map<number, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly base: string;
  private readonly roller: IndexRoller;

  constructor(private readonly o: JobWriterOptions) {
    this.job = o.job;
    this.base = jobObjectPrefix(o.prefix, o.job.jobId);
    this.roller = new IndexRoller({
      store: o.store,
      prefix: o.prefix,
      jobId: o.job.jobId,
      every: o.rollupParts,
      log: o.log,
      snapshot: () => ({ parts: this.indexes, rows: this.committed }),
    });
    this.supervisor = new ConsumerSupervisor({
      start: (current) => this.startConsumer(current),
      stallMs: o.consumerStallMs,
      running: () => !this.stopped,
      log: o.log,
      what: 'results consumer',
      context: { jobId: o.job.jobId },
      onReplaced: o.onConsumerReplaced,
    });
  }

  /** Prompts the job will have in all, once known (sealed, or cancelled). */
  get expected(): number | null {
    const j = this.job;
    if (j.status === 'open') return null;
    return j.total ?? j.accepted + j.invalid;
  }

  /**
   * Every row of [0, expected) is in a committed part. Rows outside it (a Kafka producer's record
   * numbered from 1, or past the total it sealed with) count for nothing: a job numbered from 1
   * completed with row 0 missing.
   */
  get complete(): boolean {
    const e = this.expected;
    return e !== null && this.committed.countBelow(e) >= e;
  }

  /** Every row the writer has taken (written or in an open part) in [0, expected). */
  private get allTaken(): boolean {
    const e = this.expected;
    return e !== null && this.seen.countBelow(e) >= e;
  }

  async start(): Promise<void> {
    const index = await readJobIndex(this.o.store, this.o.prefix, this.job.jobId, { rows: true });
    this.committed = index.rows!;
    this.seen.addAll(this.committed);
    for (const part of index.parts) this.adopt(part);
    this.roller.started(index);
    this.o.log.info(
      { jobId: this.job.jobId, parts: this.indexes.length, rows: this.committedRows, reads: index.requests },
      'job writer starting',
    );
    if (this.complete) return; // everything was written before a restart
    await this.supervisor.start();
    this.timer = setInterval(
      () => {
        const now = Date.now();
        // A job's first part goes at once: its first results show within a second of coming,
        // not a flush interval later; the parts after it gather `flushMs` of results each.
        const due = this.indexes.length === 0 ? Math.min(firstPartMs, this.o.flushMs) : this.o.flushMs;
        for (const [p, part] of this.open) if (now - part.openedAt >= due) void this.flush(p).catch(() => {});
      },
      Math.min(250, this.o.flushMs),
    );
  }

  /**
   * Reads the results topic with a consumer of a group of its own, from where the writer stands.
   * A consumer found hung is replaced by a new one (new connections, new group); the old one's
   * batches, should it wake, are dropped (`current()`).
   */
  private async startConsumer(current: () => boolean): Promise<Consumer> {
    // A group of this writer's own (a writer thought dead must not share its partitions): where to
    // go on comes from the indexes; the offsets it commits after each part are for lag alone.
    const groupId = `sluice-sink.${this.job.jobId}.${randomBytes(4).toString('hex')}`;
    this.groups.push(groupId);
    const consumer = this.o.kafka.consumer({
      groupId,
      sessionTimeout: 30_000,
      maxWaitTimeInMs: 200,
      // A fetch waits (up to 200 ms) for a quarter MB rather than coming back with the few outcomes
      // of the dispatcher's last write: at 1,000 outcomes a second the writer's fetches cost it a
      // fifth of its CPU (bench:e2e --quick, sink 2.1 and 2.2 CPU s against 2.7 and 2.6).
      minBytes: 256 * 1024,
    });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topic: this.job.resultsTopic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat, isRunning }) => {
        const p = batch.partition;
        for (const m of batch.messages) {
          if (!isRunning() || this.stopped || !current()) return;
          const offset = Number(m.offset);
          if (offset < (this.position.get(p) ?? 0)) continue; // in a committed or open part already
          this.position.set(p, offset + 1);
          let outcome: PromptOutcome | undefined;
          try {
            outcome = m.value ? await this.o.codecs.promptOutcome.decode(m.value) : undefined;
          } catch (err) {
            this.o.log.error({ err, jobId: this.job.jobId, partition: p, offset }, 'outcome could not be decoded');
          }
          const part = this.part(p, offset);
          part.end = offset;
          if (outcome && outcome.jobId === this.job.jobId) this.take(part, outcome);
          if (part.results.length + part.errors.length >= this.o.partRecords || part.bytes >= this.o.partBytes) {
            await this.flush(p);
            await heartbeat();
          }
        }
        if (this.allTaken) await this.flushAll();
      },
    });
    // Where the writer stands, not from the beginning (what is before is skipped anyway).
    for (const [partition, offset] of this.position)
      consumer.seek({ topic: this.job.resultsTopic, partition, offset: String(offset) });
    return consumer;
  }

  /** Consumers replaced after a hang, over the writer's life. */
  get replacements(): number {
    return this.supervisor.replacements;
  }

  /** A newer event of the job (sealed, cancelled): completion may be reached now. */
  update(job: Job): void {
    this.job = job;
    if (this.allTaken) void this.flushAll().catch(() => {});
  }

  /** Writes every open part. */
  async flushAll(): Promise<void> {
    await Promise.all([...this.open.keys()].map((p) => this.flush(p)));
    await Promise.all([...this.chains.values()]);
    if (this.complete) this.o.onProgress(this);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.supervisor.stop();
    await this.consumer?.disconnect().catch(() => undefined);
    await Promise.all([...this.chains.values()]).catch(() => undefined);
    await this.roller.idle();
    await this.deleteGroups();
  }

  /** Deletes the groups this writer joined (empty once its consumers left); best effort. */
  private async deleteGroups(): Promise<void> {
    if (this.groups.length === 0) return;
    const admin = this.o.kafka.admin();
    try {
      await admin.connect();
      await admin.deleteGroups(this.groups.splice(0));
    } catch (err) {
      this.o.log.debug({ err, jobId: this.job.jobId }, 'results consumer groups not deleted');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  private part(p: number, offset: number): OpenPart {
    let part = this.open.get(p);
    if (!part) {
      part = {
        start: offset,
        end: offset,
        results: [],
        errors: [],
        rows: [],
        bytes: 0,
        counts: zero(),
        tokens: { prompt: 0, completion: 0 },
        first: null,
        last: null,
        openedAt: Date.now(),
      };
      this.open.set(p, part);
    }
    return part;
  }

  private take(part: OpenPart, o: PromptOutcome): void {
    const row = Number(o.rowIndex);
    const e = this.expected;
    if (!Number.isSafeInteger(row) || row < 0 || row > maxRow || (e !== null && row >= e)) {
      // No row of the job: it cannot count toward it, nor take a row's place in its files.
      this.o.log.warn(
        { jobId: this.job.jobId, rowIndex: o.rowIndex, total: e },
        'outcome for a row outside the job; not written',
      );
      return;
    }
    this.lastProgressAt = Date.now();
    if (!this.seen.add(row)) return; // the first outcome of a prompt wins
    let line: string;
    if (o.status === 'succeeded' && o.result) {
      line = resultLine(o);
      part.results.push(line);
      part.counts.succeeded++;
      part.tokens.prompt += o.result.usage.promptTokens;
      part.tokens.completion += o.result.usage.completionTokens;
    } else {
      line = errorLine(o);
      part.errors.push(line);
      if (o.status === 'cancelled') part.counts.cancelled++;
      else if (isInputError(o)) part.counts.invalid++;
      else part.counts.failed++;
    }
    part.rows.push(row);
    part.bytes += line.length + 1;
    part.first = Math.min(part.first ?? o.completedAt, o.completedAt);
    part.last = Math.max(part.last ?? o.completedAt, o.completedAt);
  }

  /** Queues the open part of partition `p` for writing; parts of a partition are written in order. */
  private flush(p: number): Promise<void> {
    const part = this.open.get(p);
    if (!part) return this.chains.get(p) ?? Promise.resolve();
    this.open.delete(p);
    const next = (this.chains.get(p) ?? Promise.resolve()).then(() => this.write(p, part));
    this.chains.set(p, next);
    return next;
  }

  private async write(p: number, part: OpenPart): Promise<void> {
    const tag = `${pad(p, 3)}-${pad(part.start, 12)}`;
    const file = async (kind: 'results' | 'errors', lines: string[]): Promise<PartFile | null> => {
      if (lines.length === 0) return null;
      const body = Buffer.from(lines.join('\n') + '\n');
      const name = `${this.base}${kind}/part-${tag}-${pad(part.end, 12)}.jsonl`;
      await this.retry(() => this.o.store.put(name, body, { contentType: 'application/x-ndjson' }));
      return {
        name,
        records: lines.length,
        bytes: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
      };
    };
    const index: PartIndex = {
      partition: p,
      start: part.start,
      end: part.end,
      results: await file('results', part.results),
      errors: await file('errors', part.errors),
      rows: part.rows,
      counts: part.counts,
      tokens: part.tokens,
      firstCompletedAt: part.first,
      lastCompletedAt: part.last,
    };
    this.o.crash?.reached('sink.after-write');
    const indexName = `${indexPrefix(this.o.prefix, this.job.jobId)}${indexTag(p, part.start)}`;
    try {
      await this.retry(() =>
        this.o.store.put(indexName, JSON.stringify(index), { ifAbsent: true, contentType: 'application/json' }),
      );
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      const existing = JSON.parse((await this.o.store.get(indexName))!.toString()) as PartIndex;
      if (existing.end !== part.end) {
        // Another writer of this job (one that was thought dead) committed a different range here.
        const e = new Error(`part ${indexName} was committed by another writer with a different range`);
        this.o.onFailed(this, e);
        throw e;
      }
      // The same range, committed by an earlier run of this writer: it is ours already.
      if (this.indexes.some((i) => i.partition === p && i.start === part.start)) return;
    }
    for (const row of part.rows) this.committed.add(row);
    this.adopt(index, false);
    this.roller.committed();
    // The group's offset past the part, so that the sink's progress shows as consumer lag.
    void this.consumer
      ?.commitOffsets([{ topic: this.job.resultsTopic, partition: p, offset: String(part.end + 1) }])
      .catch(() => undefined);
    this.o.onProgress(this);
  }

  /** Takes a committed part into the writer's totals (its rows are in `committed` already). */
  private adopt(index: PartSummary | PartIndex, loading = true): void {
    this.indexes.push(partSummary(index));
    const c = index.counts;
    this.committedRows += c.succeeded + c.failed + c.cancelled + c.invalid;
    for (const k of Object.keys(this.totals) as Array<keyof Counts>) this.totals[k] += index.counts[k];
    this.tokens.prompt += index.tokens.prompt;
    this.tokens.completion += index.tokens.completion;
    if (index.firstCompletedAt !== null)
      this.firstCompletedAt = Math.min(this.firstCompletedAt ?? index.firstCompletedAt, index.firstCompletedAt);
    if (index.lastCompletedAt !== null)
      this.lastCompletedAt = Math.max(this.lastCompletedAt ?? index.lastCompletedAt, index.lastCompletedAt);
    if (loading) this.position.set(index.partition, Math.max(this.position.get(index.partition) ?? 0, index.end + 1));
  }

  /** The store may be briefly unreachable: try again with backoff, for as long as the writer runs. */
  private async retry(write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (err instanceof ObjectExistsError || this.stopped) throw err;
        this.o.log.warn({ err, jobId: this.job.jobId, attempt }, 'object write failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** attempt)));
      }
    }
  }
}
