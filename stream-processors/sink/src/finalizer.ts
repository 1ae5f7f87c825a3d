import type { Announcement, Announcer } from '@sluice/announcer';
import type { CrashPoint } from '@sluice/errors';
import { releasePlacement, type JobView } from '@sluice/job-store';
import { jobsTopic, type Logger, type Producer } from '@sluice/kafka';
import { jobObjectPrefix, manifestName as manifestOf, ObjectExistsError, type ObjectStore } from '@sluice/object-store';
import type { Job, JobEvent, SchemaCodecs } from '@sluice/schemas';
import type { Redis } from 'ioredis';
import type { JobWriter } from './job-writer.js';
import { buildManifest, type Manifest, type PriceTable } from './manifest.js';

export interface FinalizerOptions {
  store: ObjectStore;
  announcer: Announcer;
  producer: Producer;
  codecs: SchemaCodecs;
  redis: Redis;
  view: JobView;
  log: Logger;
  prefix: string;
  prices: PriceTable;
  crash?: CrashPoint;
}

interface Notifications {
  pubsubTopic?: string;
  webhookUrl?: string;
}

/**
 * Ends a job whose every prompt is accounted for: its writer stopped, left-over files removed,
 * manifest.json written (once: a manifest an earlier run wrote stands), the job announced once,
 * and the `finalized` event on sluice.jobs and in the job view.
 */
export class Finalizer {
  constructor(private readonly o: FinalizerOptions) {}

  /** Finalizes `w`'s job; returns the job as finalized. */
  async finalize(w: JobWriter): Promise<Job> {
    const job = w.job;
    await w.stop();
    const base = jobObjectPrefix(this.o.prefix, job.jobId);
    await this.removeLeftOvers(w, base);
    const manifest = await this.writeManifest(w);
    const manifestUri = this.o.store.uri(manifestOf(this.o.prefix, job.jobId));
    const notifications = JSON.parse(job.notifications || '{}') as Notifications;
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
    const final: Job = { ...job, status: manifest.status.toLowerCase(), finalizedAt: now, manifestUri, updatedAt: now };
    const event: JobEvent = { type: 'finalized', at: now, job: final };
    await this.o.producer.send({
      topic: jobsTopic,
      acks: -1,
      messages: [{ key: job.jobId, value: this.o.codecs.jobEvent.encodeSync(event) }],
    });
    await this.o.view.put(final);
    // Its partitions are free for new jobs (they landed behind finished backfills).
    await releasePlacement(this.o.redis, job.provider, job.jobId, job.partitions).catch((err: unknown) =>
      this.o.log.warn({ err, jobId: job.jobId }, 'lane placement not released'),
    );
    this.o.log.info(
      { jobId: job.jobId, tenant: job.tenant, status: manifest.status, total: manifest.counts.total },
      'job finalized and announced',
    );
    return final;
  }

  /** Files no committed part names are a crashed writer's left-overs. */
  private async removeLeftOvers(w: JobWriter, base: string): Promise<void> {
    const referenced = new Set(w.indexes.flatMap((i) => [i.results?.name, i.errors?.name]));
    for (const kind of ['results/', 'errors/']) {
      for (const name of await this.o.store.list(base + kind)) {
        if (!referenced.has(name)) await this.o.store.delete(name);
      }
    }
  }

  /** Writes the manifest unless an earlier run did (and stopped before announcing): its stands. */
  private async writeManifest(w: JobWriter): Promise<Manifest> {
    const name = manifestOf(this.o.prefix, w.job.jobId);
    const manifest = buildManifest(w, (n) => this.o.store.uri(n), this.o.prices);
    try {
      await this.o.store.put(name, JSON.stringify(manifest, null, 2) + '\n', {
        ifAbsent: true,
        contentType: 'application/json',
      });
      return manifest;
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      return JSON.parse((await this.o.store.get(name))!.toString()) as Manifest;
    }
  }

  /**
   * Announces a job once, whatever crashes between the announcement and the `finalized` event:
   * an object beside the manifest notes "announcing" before and "announced" after, and a witness
   * subscription opened before the announcement tells, after a crash between the two notes,
   * whether it went out. (A webhook has no such witness: after a crash in that window it is
   * posted again, with the same x-sluice-job-id.)
   */
  private async announceOnce(job: Job, base: string, target: Notifications, a: Announcement): Promise<void> {
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
}
