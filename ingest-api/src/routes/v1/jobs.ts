import { createGunzip } from 'node:zlib';
import { Transform, type Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '@sluice/errors';
import type { Job } from '@sluice/schemas';
import { formatOf } from '../../input/reader.js';
import { isEnded, type HeldBack, type RunCounts } from '@sluice/job-store';
import type { JobService } from '../../services/jobs.js';

const Parameters = Type.Object(
  {
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
    topP: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    maxTokens: Type.Optional(Type.Integer({ minimum: 1 })),
    responseFormat: Type.Optional(Type.Object({}, { additionalProperties: true })),
    stop: Type.Optional(Type.Array(Type.String(), { maxItems: 4 })),
    seed: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

const CreateJob = Type.Object(
  {
    provider: Type.String({ description: 'openai | azure | gemini | compatible' }),
    model: Type.String(),
    parameters: Type.Optional(Parameters),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 9, default: 0 })),
    promptTemplate: Type.Optional(
      Type.String({ maxLength: 100_000, description: 'e.g. "Summarize: {{text}}" over a row\'s fields' }),
    ),
    metadata: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 1_000 }))),
    notifications: Type.Optional(
      Type.Object(
        { pubsubTopic: Type.Optional(Type.String()), webhookUrl: Type.Optional(Type.String({ format: 'uri' })) },
        { additionalProperties: false },
      ),
    ),
    source: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('kafka')])),
    parallelism: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  },
  { additionalProperties: false },
);

const JobView = Type.Object({
  id: Type.String(),
  status: Type.String(),
  /** Why the job has its status, when Sluice set it (e.g. a job left open past its time, expired). */
  statusReason: Type.Union([Type.String(), Type.Null()]),
  provider: Type.String(),
  model: Type.String(),
  priority: Type.Integer(),
  source: Type.String(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  /** When every prompt was accounted for and the job announced. */
  finalizedAt: Type.Union([Type.String(), Type.Null()]),
  manifestUri: Type.Union([Type.String(), Type.Null()]),
  /** The job's result files so far (GET). */
  results: Type.String(),
  metadata: Type.Record(Type.String(), Type.String()),
  counts: Type.Object({
    total: Type.Union([Type.Integer(), Type.Null()]),
    queued: Type.Integer(),
    invalid: Type.Integer(),
    inFlight: Type.Integer(),
    succeeded: Type.Integer(),
    failed: Type.Integer(),
    retrying: Type.Integer(),
  }),
  // What a Kafka producer needs for its records: where (lane topic, the job's partitions) and
  // the tenant its records must name.
  kafka: Type.Object({
    laneTopic: Type.String(),
    partitions: Type.Array(Type.Integer()),
    resultsTopic: Type.String(),
    tenant: Type.String(),
  }),
  /**
   * GET of one unfinished job: whether its lane runs under half of the limit the provider states
   * for its model, with no 429, and the reason its rate control gives (null: it does not).
   */
  lane: Type.Optional(
    Type.Object({
      heldBack: Type.Union([
        Type.Null(),
        Type.Object({ reason: Type.String(), since: Type.String(), keyId: Type.String() }),
      ]),
    }),
  ),
});

const ErrorReply = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: true }),
});
const IdParams = Type.Object({ id: Type.String({ pattern: '^job_[a-z0-9]+$' }) });

function view(job: Job, counts: RunCounts, heldBack?: HeldBack[]): Static<typeof JobView> {
  const held = heldBack?.[0];
  // Of the prompts without an outcome yet: in a dispatcher's hands, waiting in a delay topic
  // (both live figures, 0 once the job has ended), and the rest queued on the lane.
  const pending = Math.max(0, job.accepted - counts.succeeded - counts.failed);
  const inFlight = isEnded(job.status) ? 0 : Math.min(pending, counts.inFlight);
  const retrying = isEnded(job.status) ? 0 : Math.min(pending - inFlight, counts.retrying);
  return {
    ...(heldBack === undefined
      ? {}
      : {
          lane: {
            heldBack: held
              ? { reason: held.reason, since: new Date(held.since).toISOString(), keyId: held.keyId }
              : null,
          },
        }),
    id: job.jobId,
    status: job.status,
    statusReason: job.statusReason ?? null,
    provider: job.provider,
    model: job.model,
    priority: job.priority,
    source: job.source,
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
    finalizedAt: job.finalizedAt === null ? null : new Date(job.finalizedAt).toISOString(),
    manifestUri: job.manifestUri,
    results: `/v1/jobs/${job.jobId}/results`,
    metadata: job.metadata,
    counts: {
      total: job.total,
      queued: pending - inFlight - retrying,
      invalid: job.invalid,
      inFlight,
      succeeded: counts.succeeded,
      failed: counts.failed + job.invalid,
      retrying,
    },
    kafka: { laneTopic: job.laneTopic, partitions: job.partitions, resultsTopic: job.resultsTopic, tenant: job.tenant },
  };
}

const noCounts: RunCounts = { inFlight: 0, succeeded: 0, failed: 0, retrying: 0 };

/** Caps an upload's size without buffering it. */
function limitBytes(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > max) {
        done(
          new SluiceError('UPLOAD_TOO_LARGE', `the upload is larger than ${max} bytes`, {
            hint: 'split the input into several jobs',
          }),
        );
      } else done(null, chunk);
    },
  });
}

export function jobRoutes(app: FastifyInstance, jobs: JobService, maxUploadBytes: number): void {
  jobWriteRoutes(app, jobs);
  jobReadRoutes(app, jobs);
  uploadRoutes(app, jobs, maxUploadBytes);
}

/** Create, cancel, seal. */
function jobWriteRoutes(app: FastifyInstance, jobs: JobService): void {
  app.post(
    '/v1/jobs',
    {
      schema: {
        summary: 'Create a job',
        description: 'An Idempotency-Key header makes a retried create return the same job.',
        body: CreateJob,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }),
        response: { 200: JobView, 201: JobView, 400: ErrorReply, 401: ErrorReply },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof CreateJob>;
      const key = request.headers['idempotency-key'] as string | undefined;
      const { job, created } = await jobs.create(request.tenant, body, key);
      return reply.status(created ? 201 : 200).send(view(job, noCounts));
    },
  );

  app.delete(
    '/v1/jobs/:id',
    { schema: { summary: 'Cancel a job', params: IdParams, response: { 200: JobView, 404: ErrorReply } } },
    async (request) => {
      const job = await jobs.cancel(request.tenant, (request.params as { id: string }).id);
      return view(job, await jobs.view.counts(job.jobId));
    },
  );

  app.post(
    '/v1/jobs/:id/seal',
    {
      schema: {
        summary: 'Seal a job fed by Kafka producers, with its total',
        params: IdParams,
        body: Type.Object({ total: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
        response: { 200: JobView, 404: ErrorReply, 409: ErrorReply },
      },
    },
    async (request) => {
      const job = await jobs.seal(
        request.tenant,
        (request.params as { id: string }).id,
        (request.body as { total: number }).total,
      );
      return view(job, noCounts);
    },
  );
}

/** A tenant's jobs, and one job with its counts. */
function jobReadRoutes(app: FastifyInstance, jobs: JobService): void {
  app.get(
    '/v1/jobs',
    {
      schema: {
        summary: "List the tenant's jobs, newest first",
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
          before: Type.Optional(Type.Integer()),
        }),
        response: { 200: Type.Object({ jobs: Type.Array(JobView), next: Type.Union([Type.Integer(), Type.Null()]) }) },
      },
    },
    async (request) => {
      const q = request.query as { limit: number; before?: number };
      const list = await jobs.list(request.tenant, q.limit, q.before);
      const withCounts = await Promise.all(list.map(async (j) => view(j, await jobs.view.counts(j.jobId))));
      return { jobs: withCounts, next: list.length === q.limit ? (list[list.length - 1]?.createdAt ?? null) : null };
    },
  );

  app.get(
    '/v1/jobs/:id',
    { schema: { summary: 'A job: status and counts', params: IdParams, response: { 200: JobView, 404: ErrorReply } } },
    async (request) => {
      const { job, counts } = await jobs.get(request.tenant, (request.params as { id: string }).id);
      const open = job.finalizedAt === null && job.status !== 'cancelled';
      return view(job, counts, open ? await jobs.view.heldBack(job.provider, job.model) : undefined);
    },
  );
}

/** A job's input, uploaded as a stream. */
function uploadRoutes(app: FastifyInstance, jobs: JobService, maxUploadBytes: number): void {
  // Uploads stream: this scope takes every content type as a raw stream.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.put(
      '/v1/jobs/:id/input',
      {
        schema: {
          summary: "Upload a job's input and seal it",
          description:
            'JSONL (application/jsonl, application/x-ndjson), CSV with a header row (text/csv) or a JSON array ' +
            '(application/json); ?format=jsonl|csv|json overrides the Content-Type. Streamed: bad rows become error ' +
            'outcomes and the job goes on. An interrupted upload can be repeated: it resumes after the committed rows.',
          params: IdParams,
          querystring: Type.Object({
            format: Type.Optional(Type.Union([Type.Literal('jsonl'), Type.Literal('csv'), Type.Literal('json')])),
          }),
        },
      },
      async (request, reply) => {
        const format = formatOf(request.headers['content-type'], (request.query as { format?: string }).format);
        if (!format) {
          throw new SluiceError(
            'UNSUPPORTED_MEDIA_TYPE',
            `cannot read input of type "${request.headers['content-type'] ?? '(none)'}"`,
            {
              hint: 'send Content-Type application/jsonl, text/csv or application/json, or add ?format=jsonl|csv|json',
            },
          );
        }
        const raw = request.body as Readable;
        const body = uploadStream(request.headers['content-encoding'], raw, maxUploadBytes);
        try {
          return await jobs.upload(request.tenant, (request.params as { id: string }).id, body, format);
        } finally {
          if (!raw.readableEnded) {
            // Refused before the end: the rest is not read, and the connection closes after the answer.
            raw.unpipe();
            void reply.header('connection', 'close');
          }
        }
      },
    );
  });
}

/**
 * The upload's body as read: inflated when gzip, cut at `maxUploadBytes` (counted after
 * inflation: inflation is bounded).
 */
function uploadStream(contentEncoding: string | undefined, raw: Readable, maxUploadBytes: number): Readable {
  // The request is piped, not pipelined: a refusal (a cancel, the size limit, a document that
  // cannot be read) ends the reading of the body but must not destroy the request, which would
  // close the connection before the answer is written.
  const encoding = (contentEncoding ?? 'identity').toLowerCase().trim();
  if (!['identity', 'gzip', 'x-gzip'].includes(encoding)) {
    throw new SluiceError('UNSUPPORTED_MEDIA_TYPE', `cannot read an upload with Content-Encoding "${encoding}"`, {
      hint: 'send it uncompressed or with Content-Encoding: gzip',
    });
  }
  // The size limit counts the bytes as read, after a gzip body is inflated: inflation is bounded.
  const body = limitBytes(maxUploadBytes);
  body.on('error', () => undefined); // the upload's reader takes it (it may start after the error)
  raw.on('aborted', () => body.destroy(new Error('the client closed the connection')));
  raw.on('error', (err) => body.destroy(err));
  if (encoding === 'identity') raw.pipe(body);
  else {
    const inflate = createGunzip();
    inflate.on('error', (err) =>
      body.destroy(
        new SluiceError('INPUT_BAD_ENCODING', `the gzip body cannot be inflated: ${err.message}`, {
          hint: 'send a whole gzip stream (gzip -c input.jsonl), or send it uncompressed',
        }),
      ),
    );
    raw.pipe(inflate).pipe(body);
  }
  return body;
}
