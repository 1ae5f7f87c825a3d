import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
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
  decode(buffer: Buffer): Promise<T>;
}

export interface SchemaCodecs {
  promptRequest: Codec<PromptRequest>;
  promptOutcome: Codec<PromptOutcome>;
  jobEvent: Codec<JobEvent>;
}

/** Subjects follow the record name strategy: one subject per record, whatever the topic. */
export const subjects = {
  promptRequest: 'sluice.v1.PromptRequest',
  promptOutcome: 'sluice.v1.PromptOutcome',
  jobEvent: 'sluice.v1.JobEvent',
} as const;

/**
 * Registers Sluice's schemas (a no-op when already registered) and returns encoders and decoders
 * using Confluent framing (magic byte 0, schema id, Avro body). Decoding reads any registered
 * version by the id in the frame, resolved to the current schema.
 */
export async function createSchemaCodecs(options: SchemaCodecOptions): Promise<SchemaCodecs> {
  const registry = new SchemaRegistry({ host: options.registryUrl });
  const make = async <T>(subject: string, schema: Record<string, unknown>): Promise<Codec<T>> => {
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject });
    return {
      schemaId: id,
      encode: (value: T) => registry.encode(id, value),
      decode: (buffer: Buffer) => registry.decode(buffer) as Promise<T>,
    };
  };
  const [promptRequest, promptOutcome, jobEvent] = await Promise.all([
    make<PromptRequest>(subjects.promptRequest, promptRequestSchema),
    make<PromptOutcome>(subjects.promptOutcome, promptOutcomeSchema),
    make<JobEvent>(subjects.jobEvent, jobEventSchema),
  ]);
  return { promptRequest, promptOutcome, jobEvent };
}
