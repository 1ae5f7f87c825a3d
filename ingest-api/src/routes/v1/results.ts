import { PassThrough } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { manifestName, openObjectStore, readJobIndex, type ObjectStore, type PartFile } from '@sluice/object-store';
import type { IngestConfig } from '../../config.js';
import type { JobService } from '../../services/jobs.js';

export interface ResultsAccess {
  store: ObjectStore;
  prefix: string;
  signedUrlTtlMs: number;
}

/** The results store the API's settings name (the same settings as the sink's). */
export async function openResultsAccess(r: IngestConfig['results']): Promise<ResultsAccess> {
  const store = await openObjectStore({
    bucket: r.bucket,
    gcsEndpoint: r.gcsEndpoint,
    projectId: r.projectId,
    localDir: r.localDir,
    credentialsFile: r.credentialsFile,
  });
  return { store, prefix: r.prefix, signedUrlTtlMs: r.signedUrlTtlMs };
}

const IdParams = Type.Object({ id: Type.String({ pattern: '^job_[a-z0-9]+$' }) });
/** A part file's own name, without its job and kind folders. */
const fileName = (name: string) => name.slice(name.lastIndexOf('/') + 1);
const KindParams = Type.Object({
  id: Type.String({ pattern: '^job_[a-z0-9]+$' }),
  kind: Type.Union([Type.Literal('results'), Type.Literal('errors')]),
});
const FileView = Type.Object({
  kind: Type.String(),
  uri: Type.String(),
  url: Type.String(),
  records: Type.Integer(),
  bytes: Type.Integer(),
  sha256: Type.String(),
});
const ResultsView = Type.Object({
  jobId: Type.String(),
  status: Type.String(),
  /** Every prompt is accounted for and the manifest is written. */
  complete: Type.Boolean(),
  manifest: Type.Union([Type.Object({ uri: Type.String(), url: Type.String() }), Type.Null()]),
  /** Records in the files below (partial while the job runs). */
  records: Type.Integer(),
  files: Type.Array(FileView),
  /** Every file of one kind as one JSONL download. */
  downloads: Type.Object({ results: Type.String(), errors: Type.String() }),
});

/**
 * A job's results: the files the sink has committed so far (partial while the job runs), each
 * with a V4 signed URL on GCS, and streamed downloads of all results or all errors as one JSONL.
 */
export function resultRoutes(app: FastifyInstance, jobs: JobService, access: ResultsAccess): void {
  const { store, prefix } = access;
  const files = async (jobId: string) => {
    const { parts } = await readJobIndex(store, prefix, jobId);
    const of = (kind: 'results' | 'errors') =>
      parts.flatMap((p) => (p[kind] ? [{ kind, ...(p[kind] as PartFile) }] : []));
    return [...of('results'), ...of('errors')];
  };
  listingRoute(app, jobs, access, files);
  downloadRoutes(app, jobs, access, files);
}

type Files = (jobId: string) => Promise<Array<PartFile & { kind: 'results' | 'errors' }>>;

/** The listing (every committed file with its link), and the manifest once written. */
function listingRoute(app: FastifyInstance, jobs: JobService, access: ResultsAccess, files: Files): void {
  const { store, prefix } = access;
  app.get(
    '/v1/jobs/:id/results',
    {
      schema: {
        summary: "A job's result files so far, with links",
        description:
          'Partial while the job runs; complete once the manifest is written. On GCS each file has a V4 signed URL; ' +
          'with local storage the links are downloads through this API.',
        params: IdParams,
        response: { 200: ResultsView },
      },
    },
    async (request) => {
      const { job } = await jobs.get(request.tenant, (request.params as { id: string }).id);
      const base = `/v1/jobs/${job.jobId}/results`;
      // Signed where the store can sign (GCS with a key or workload identity); else through this API.
      const link = async (name: string, fallback: string) =>
        (await store.signedUrl(name, access.signedUrlTtlMs).catch(() => undefined)) ?? fallback;
      const list = await files(job.jobId);
      const manifest = manifestName(prefix, job.jobId);
      const hasManifest = job.manifestUri !== null || (await store.get(manifest)) !== undefined;
      return {
        jobId: job.jobId,
        status: job.status,
        complete: hasManifest,
        manifest: hasManifest ? { uri: store.uri(manifest), url: await link(manifest, `${base}/manifest`) } : null,
        records: list.reduce((n, f) => n + f.records, 0),
        files: await Promise.all(
          list.map(async (f) => ({
            kind: f.kind,
            uri: store.uri(f.name),
            // Where the store cannot sign, this one file through the API (not the job's whole stream).
            url: await link(f.name, `${base}/files/${f.kind}/${encodeURIComponent(fileName(f.name))}`),
            records: f.records,
            bytes: f.bytes,
            sha256: f.sha256,
          })),
        ),
        downloads: { results: `${base}/results`, errors: `${base}/errors` },
      };
    },
  );

  app.get(
    '/v1/jobs/:id/results/manifest',
    { schema: { summary: "A finished job's manifest.json", params: IdParams } },
    async (request, reply) => {
      const { job } = await jobs.get(request.tenant, (request.params as { id: string }).id);
      const raw = await store.get(manifestName(prefix, job.jobId));
      if (!raw) {
        return reply.status(404).send({
          error: { code: 'NOT_FOUND', message: `job ${job.jobId} has no manifest yet: it is ${job.status}` },
        });
      }
      return reply.type('application/json').send(raw);
    },
  );
}

/** One file, and every file of a kind as one stream. */
function downloadRoutes(app: FastifyInstance, jobs: JobService, access: ResultsAccess, files: Files): void {
  const { store } = access;

  app.get(
    '/v1/jobs/:id/results/files/:kind/:file',
    {
      schema: {
        summary: 'One committed results (or errors) file of a job, as the listing names it',
        params: Type.Object({
          id: Type.String({ pattern: '^job_[a-z0-9]+$' }),
          kind: Type.Union([Type.Literal('results'), Type.Literal('errors')]),
          file: Type.String({ pattern: '^part-[0-9]+-[0-9]+-[0-9]+\\.jsonl$' }),
        }),
      },
    },
    async (request, reply) => {
      const { id, kind, file } = request.params as { id: string; kind: 'results' | 'errors'; file: string };
      const { job } = await jobs.get(request.tenant, id);
      // Only a file a committed part names: never a path the caller makes up.
      const found = (await files(job.jobId)).find((f) => f.kind === kind && fileName(f.name) === file);
      if (!found) {
        return reply.status(404).send({
          error: { code: 'NOT_FOUND', message: `job ${job.jobId} has no committed ${kind} file ${file}` },
        });
      }
      const out = streamOf(store, [found.name]);
      return reply
        .type('application/jsonl')
        .header('content-disposition', `attachment; filename="${job.jobId}-${file}"`)
        .send(out);
    },
  );

  app.get(
    '/v1/jobs/:id/results/:kind',
    {
      schema: {
        summary: 'Every committed results (or errors) file of a job, as one JSONL stream',
        params: KindParams,
      },
    },
    async (request, reply) => {
      const { id, kind } = request.params as { id: string; kind: 'results' | 'errors' };
      const { job } = await jobs.get(request.tenant, id);
      const names = (await files(job.jobId)).filter((f) => f.kind === kind).map((f) => f.name);
      const out = streamOf(store, names);
      return reply
        .type('application/jsonl')
        .header('content-disposition', `attachment; filename="${job.jobId}-${kind}.jsonl"`)
        .send(out);
    },
  );
}

/** The objects `names`, one after the other, as one stream (the store read as the client takes it). */
function streamOf(store: ResultsAccess['store'], names: string[]): PassThrough {
  const out = new PassThrough();
  void (async () => {
    try {
      for (const name of names) {
        for await (const chunk of store.read(name))
          if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
      }
      out.end();
    } catch (err) {
      out.destroy(err as Error);
    }
  })();
  return out;
}
