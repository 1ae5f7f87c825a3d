import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';

function promptSchema(namespace: string, extraField?: object): string {
  return JSON.stringify({
    type: 'record',
    name: 'Prompt',
    namespace,
    fields: [
      { name: 'jobId', type: 'string' },
      { name: 'rowIndex', type: 'long' },
      { name: 'text', type: 'string' },
      ...(extraField ? [extraField] : []),
    ],
  });
}

describe('schema registry (Confluent REST API)', () => {
  const registry = new SchemaRegistry({ host: stackSettings().schemaRegistryUrl });

  it('registers an Avro schema and round-trips a record with Confluent framing', async () => {
    const subject = uniqueName('smoke-subject');
    const namespace = `sluice.smoke.n${Date.now()}`;
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: promptSchema(namespace) }, { subject });
    expect(id).toBeGreaterThan(0);
    expect(await registry.getLatestSchemaId(subject)).toBe(id);

    const record = { jobId: 'job-1', rowIndex: 41, text: 'hello' };
    const encoded = await registry.encode(id, record);
    // Confluent wire format: magic byte 0, then the schema id as a big-endian int32.
    expect(encoded[0]).toBe(0);
    expect(encoded.readInt32BE(1)).toBe(id);
    // A second client knows the schema only by the id in the frame.
    const reader = new SchemaRegistry({ host: stackSettings().schemaRegistryUrl });
    expect(await reader.decode(encoded)).toEqual(record);
  });

  it('accepts a BACKWARD-compatible change and rejects an incompatible one', async () => {
    const subject = uniqueName('smoke-compat');
    const namespace = `sluice.smoke.c${Date.now()}`;
    const v1 = await registry.register({ type: SchemaType.AVRO, schema: promptSchema(namespace) }, { subject });
    const v2 = await registry.register(
      { type: SchemaType.AVRO, schema: promptSchema(namespace, { name: 'priority', type: 'int', default: 0 }) },
      { subject },
    );
    expect(v2.id).not.toBe(v1.id);
    await expect(
      registry.register(
        { type: SchemaType.AVRO, schema: promptSchema(namespace, { name: 'tenant', type: 'string' }) },
        { subject },
      ),
    ).rejects.toThrow(/incompatible/i);
  });
});
