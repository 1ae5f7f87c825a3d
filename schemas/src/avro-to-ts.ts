/**
 * Generates TypeScript interfaces from Avro schemas, as avsc encodes and decodes them: records are
 * interfaces, ["null", X] is X | null, long and timestamp-millis are number, arrays and maps are
 * arrays and records of their items.
 */
type Avro = string | Avro[] | { [k: string]: unknown };

interface Field {
  name: string;
  type: Avro;
  doc?: string;
  default?: unknown;
}

const primitive: Record<string, string> = {
  null: 'null',
  boolean: 'boolean',
  int: 'number',
  long: 'number',
  float: 'number',
  double: 'number',
  bytes: 'Buffer',
  string: 'string',
};

export function avroToTs(schemas: Avro[]): string {
  const out: string[] = [];
  const emitted = new Set<string>();

  const typeOf = (t: Avro): string => {
    if (typeof t === 'string') return primitive[t] ?? t.split('.').pop()!;
    if (Array.isArray(t)) return t.map(typeOf).join(' | ');
    const o = t as Record<string, unknown>;
    switch (o['type']) {
      case 'record':
        emitRecord(o);
        return String(o['name']);
      case 'enum':
        return (o['symbols'] as string[]).map((s) => `'${s}'`).join(' | ');
      case 'array':
        return `Array<${typeOf(o['items'] as Avro)}>`;
      case 'map':
        return `Record<string, ${typeOf(o['values'] as Avro)}>`;
      case 'fixed':
        return 'Buffer';
      default:
        return typeOf(o['type'] as Avro);
    }
  };

  const emitRecord = (o: Record<string, unknown>): void => {
    const name = String(o['name']);
    if (emitted.has(name)) return;
    emitted.add(name);
    const fields = (o['fields'] as Field[]).map((f) => {
      const type = typeOf(f.type);
      const doc = f.doc ? `  /** ${f.doc} */\n` : '';
      return `${doc}  ${f.name}: ${type};`;
    });
    const doc = o['doc'] ? `/** ${String(o['doc'])} */\n` : '';
    out.push(`${doc}export interface ${name} {\n${fields.join('\n')}\n}\n`);
  };

  for (const s of schemas) typeOf(s);
  return `// Generated from schemas/avro/*.avsc by \`npm run schemas:generate\`. Do not edit.\n\n${out.join('\n')}`;
}
