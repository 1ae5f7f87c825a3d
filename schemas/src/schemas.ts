import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const schemasDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'avro');

/** The schema files, by file name, parsed. */
export function loadSchemaFiles(dir = schemasDir): Array<{ file: string; schema: Record<string, unknown> }> {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.avsc'))
    .sort()
    .map((file) => ({ file, schema: JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown> }));
}

function schemaText(file: string): string {
  return readFileSync(join(schemasDir, file), 'utf8');
}

export const promptRequestSchema = JSON.parse(schemaText('prompt-request.avsc')) as Record<string, unknown>;
export const promptOutcomeSchema = JSON.parse(schemaText('prompt-outcome.avsc')) as Record<string, unknown>;
export const jobEventSchema = JSON.parse(schemaText('job-event.avsc')) as Record<string, unknown>;
