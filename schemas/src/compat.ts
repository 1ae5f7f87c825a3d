import avro from 'avsc';

/**
 * Whether data written with `writer` can be read with `reader` (Avro schema resolution). A change
 * is BACKWARD compatible when the new schema, as reader, reads every older schema's data.
 * Returns undefined when compatible, else the reason.
 */
export function backwardIncompatibility(reader: unknown, writer: unknown): string | undefined {
  try {
    // Separate registries: two versions of one named record must not collide.
    const r = avro.Type.forSchema(reader as avro.Schema, { registry: {} });
    const w = avro.Type.forSchema(writer as avro.Schema, { registry: {} });
    r.createResolver(w);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
