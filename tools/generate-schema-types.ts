/**
 * Writes schemas/src/generated.ts from schemas/avro/*.avsc.
 *   npm run schemas:generate          write it
 *   npm run schemas:generate -- --check   exit 1 if the committed file is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { avroToTs } from '../schemas/src/avro-to-ts.js';
import { loadSchemaFiles, schemasDir } from '../schemas/src/schemas.js';

const target = join(schemasDir, '..', 'src', 'generated.ts');
const text = avroToTs(loadSchemaFiles().map((s) => s.schema as never));
if (process.argv.includes('--check')) {
  const current = readFileSync(target, 'utf8');
  if (current !== text) {
    console.error(`${target} is out of date: run npm run schemas:generate`);
    process.exit(1);
  }
  console.log('generated schema types are up to date');
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
