import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import type { JobEvent, PromptOutcome, PromptRequest } from './generated.js';
import { jobEventSchema, promptOutcomeSchema, promptRequestSchema } from './schemas.js';

export interface SchemaCodecOptions {
  /** Confluent-compatible schema registry URL. */
  registryUrl: string;
}

export interface Codec<T> {
  /** The registry id of the schema encoded with. */
  readonly schemaId: number;
  encode(value: T): Promise<Buffer>;
  /** The same bytes as encode(), without a round through the registry client: for hot paths. */
  encodeSync(value: T): Buffer;
  decode(buffer: Buffer): Promise<T>;
}

export interface SchemaCodecs {
  promptRequest: Codec<PromptRequest>;
  promptOutcome: Codec<PromptOutcome>;
  jobEvent: Codec<JobEvent>;
  /**
   * Sets a subject's compatibility level to BACKWARD (any later schema must read what earlier
   * ones wrote, so that Sluice reads every producer's records): Sluice's own subjects at start,
   * and a lane's topic-name subject (`<lane topic>-value`), where Confluent clients register by
   * default, when its dispatcher starts. A level set by hand to something else is left.
   */
  backwardCompatible(subject: string): Promise<void>;
}

/** Compatibility levels at least as strict as BACKWARD: an operator's choice among them stays. */
const backwardOrStricter = new Set(['BACKWARD', 'BACKWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE']);

async function backwardCompatible(registryUrl: string, subject: string): Promise<void> {
  const url = `${registryUrl.replace(/\/$/, '')}/config/${encodeURIComponent(subject)}`;
  const current = await fetch(url);
  if (current.ok) {
    const level = ((await current.json()) as { compatibilityLevel?: string }).compatibilityLevel;
    if (level && backwardOrStricter.has(level)) return;
  } else await current.body?.cancel();
  const res = await fetch(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ compatibility: 'BACKWARD' }),
  });
  if (!res.ok)
    throw new Error(`the registry refused compatibility BACKWARD for ${subject}: ${res.status} ${await res.text()}`);
  await res.body?.cancel();
}

/** Subjects follow the record name strategy: one subject per record, whatever the topic. */
export const subjects = {
  promptRequest: 'sluice.v1.PromptRequest',
  promptOutcome: 'sluice.v1.PromptOutcome',
  jobEvent: 'sluice.v1.JobEvent',
} as const;

/** A writer schema by its registry id, as the Confluent REST API serves it. */
async function writerSchema(registryUrl: string, id: number): Promise<unknown> {
  const res = await fetch(`${registryUrl.replace(/\/$/, '')}/schemas/ids/${id}`);
  if (!res.ok) throw new Error(`schema id ${id}: the registry answered ${res.status} ${await res.text()}`);
  const { schema } = (await res.json()) as { schema: string };
  return JSON.parse(schema) as unknown;
}

/**
 * Registers Sluice's schemas (a no-op when already registered) and returns encoders and decoders
 * using Confluent framing (magic byte 0, schema id, Avro body). Decoding reads any registered
 * version by the id in the frame, resolved to the current schema.
 */
export async function createSchemaCodecs(options: SchemaCodecOptions): Promise<SchemaCodecs> {
  const registry = new SchemaRegistry({ host: options.registryUrl });
  const make = async <T>(subject: string, schema: Record<string, unknown>): Promise<Codec<T>> => {
    await backwardCompatible(options.registryUrl, subject);
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject });
    const type = avro.Type.forSchema(schema as avro.Schema, { registry: {} });
    // Per writer schema id: a resolver from it to this reader schema (Confluent's schema
    // evolution: a producer's BACKWARD-compatible schema, fields it leaves out given defaults).
    const resolvers = new Map<number, Promise<ReturnType<avro.Type['createResolver']>>>();
    const resolverFor = (writerId: number) => {
      let r = resolvers.get(writerId);
      if (!r) {
        r = writerSchema(options.registryUrl, writerId).then((writer) => {
          try {
            return type.createResolver(avro.Type.forSchema(writer as avro.Schema, { registry: {} }));
          } catch (err) {
            throw new Error(
              `schema id ${writerId} cannot be read as ${subject}: ${(err as Error).message}; ` +
                'register a schema BACKWARD compatible with it',
            );
          }
        });
        resolvers.set(writerId, r);
        r.catch(() => resolvers.delete(writerId));
      }
      return r;
    };
    return {
      schemaId: id,
      encode: (value: T) => registry.encode(id, value),
      encodeSync: (value: T) => {
        const body = type.toBuffer(value);
        const frame = Buffer.allocUnsafe(5 + body.length);
        frame[0] = 0; // Confluent magic byte
        frame.writeInt32BE(id, 1);
        body.copy(frame, 5);
        return frame;
      },
      decode: async (buffer: Buffer) => {
        if (buffer.length < 5 || buffer[0] !== 0)
          throw new Error('not a Confluent-framed Avro record (magic byte 0, schema id, body)');
        const writerId = buffer.readInt32BE(1);
        const body = buffer.subarray(5);
        if (writerId === id) return type.fromBuffer(body) as T;
        return type.fromBuffer(body, await resolverFor(writerId)) as T;
      },
    };
  };
  const [promptRequest, promptOutcome, jobEvent] = await Promise.all([
    make<PromptRequest>(subjects.promptRequest, promptRequestSchema),
    make<PromptOutcome>(subjects.promptOutcome, promptOutcomeSchema),
    make<JobEvent>(subjects.jobEvent, jobEventSchema),
  ]);
  return {
    promptRequest,
    promptOutcome,
    jobEvent,
    backwardCompatible: (subject) => backwardCompatible(options.registryUrl, subject),
  };
}
