import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stackSettings } from '@sluice/testing';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  backwardIncompatibility,
  createSchemaCodecs,
  jobEventSchema,
  promptOutcomeSchema,
  promptRequestSchema,
  type JobEvent,
  type PromptOutcome,
  type PromptRequest,
} from '../src/index.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const types: Record<string, avro.Type> = {
  'prompt-request': avro.Type.forSchema(promptRequestSchema as avro.Schema, { registry: {} }),
  'prompt-outcome': avro.Type.forSchema(promptOutcomeSchema as avro.Schema, { registry: {} }),
  'job-event': avro.Type.forSchema(jobEventSchema as avro.Schema, { registry: {} }),
};
const read = (dir: string, file: string) => JSON.parse(readFileSync(join(fixtures, dir, file), 'utf8')) as unknown;
const typeFor = (file: string) => types[Object.keys(types).find((k) => file.startsWith(k)) ?? ''];

describe('Avro contracts', () => {
  it('accepts every valid fixture and round-trips it through Avro', () => {
    const files = readdirSync(join(fixtures, 'valid'));
    expect(files.sort()).toEqual(['job-event.json', 'prompt-outcome.json', 'prompt-request.json']);
    for (const file of files) {
      const type = typeFor(file)!;
      const value = read('valid', file);
      expect(type.isValid(value), file).toBe(true);
      expect(type.fromBuffer(type.toBuffer(value))).toEqual(value);
    }
  });

  it('rejects every invalid fixture, naming the path of the bad field', () => {
    const expected: Record<string, string> = {
      'prompt-request.missing-messages.json': 'messages',
      'prompt-outcome.row-index-string.json': 'rowIndex',
      'job-event.partitions-not-ints.json': 'job.partitions.0',
    };
    for (const file of readdirSync(join(fixtures, 'invalid'))) {
      const paths: string[] = [];
      const valid = typeFor(file)!.isValid(read('invalid', file), { errorHook: (path) => paths.push(path.join('.')) });
      expect(valid, file).toBe(false);
      expect(paths, file).toContain(expected[file]);
    }
  });

  it('has generated TypeScript types that match the schemas', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'tools/generate-schema-types.ts', '--check'], {
      cwd: join(import.meta.dirname, '..', '..'),
      encoding: 'utf8',
    });
    expect(out).toContain('up to date');
  });
});

describe('BACKWARD compatibility check', () => {
  const v1 = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'string' }] };

  it('accepts a new field with a default and a removed field', () => {
    expect(
      backwardIncompatibility({ ...v1, fields: [...v1.fields, { name: 'b', type: 'int', default: 0 }] }, v1),
    ).toBeUndefined();
    expect(backwardIncompatibility({ ...v1, fields: [] }, v1)).toBeUndefined();
  });

  it('rejects a new field without a default and a changed type', () => {
    expect(backwardIncompatibility({ ...v1, fields: [...v1.fields, { name: 'b', type: 'int' }] }, v1)).toMatch(/b/);
    expect(backwardIncompatibility({ ...v1, fields: [{ name: 'a', type: 'int' }] }, v1)).toBeDefined();
  });

  it('finds every committed schema compatible with its history', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'tools/check-schema-compat.ts'], {
      cwd: join(import.meta.dirname, '..', '..'),
      encoding: 'utf8',
    });
    expect(out).toMatch(/0 incompatible/);
  });
});

describe('schema registry codecs (real registry)', () => {
  it('encodes with Confluent framing and decodes every record type', async () => {
    const codecs = await createSchemaCodecs({ registryUrl: stackSettings().schemaRegistryUrl });
    const request = read('valid', 'prompt-request.json') as PromptRequest;
    const outcome = read('valid', 'prompt-outcome.json') as PromptOutcome;
    const event = read('valid', 'job-event.json') as JobEvent;
    const frame = await codecs.promptRequest.encode(request);
    expect(frame[0]).toBe(0);
    expect(frame.readInt32BE(1)).toBe(codecs.promptRequest.schemaId);
    expect(await codecs.promptRequest.decode(frame)).toEqual(request);
    expect(codecs.promptRequest.encodeSync(request).equals(frame)).toBe(true);
    expect(await codecs.promptOutcome.decode(await codecs.promptOutcome.encode(outcome))).toEqual(outcome);
    expect(await codecs.jobEvent.decode(await codecs.jobEvent.encode(event))).toEqual(event);
    // Registering again is idempotent: the same ids.
    const again = await createSchemaCodecs({ registryUrl: stackSettings().schemaRegistryUrl });
    expect(again.promptRequest.schemaId).toBe(codecs.promptRequest.schemaId);
  });

  // Regression: lane records were decoded with the writer's schema only, so a producer whose
  // BACKWARD-compatible schema left out optional fields gave records with `priority` undefined
  // (the fair share's weight NaN, and the whole lane stalled).
  it("reads a producer's leaner BACKWARD-compatible schema with Sluice's defaults filled in", async () => {
    const { schemaRegistryUrl } = stackSettings();
    const codecs = await createSchemaCodecs({ registryUrl: schemaRegistryUrl });
    const dropped = new Set(['attempt', 'customId', 'priority']);
    const lean = {
      ...promptRequestSchema,
      fields: (promptRequestSchema as { fields: Array<{ name: string }> }).fields.filter((f) => !dropped.has(f.name)),
    };
    // Registered as a Confluent client registers it by default: the topic-name strategy.
    const res = await fetch(`${schemaRegistryUrl}/subjects/sluice.requests.lean-${Date.now()}-value/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify(lean) }),
    });
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: number };
    const full = read('valid', 'prompt-request.json') as PromptRequest;
    const leanValue = Object.fromEntries(Object.entries(full).filter(([k]) => !dropped.has(k)));
    const body = avro.Type.forSchema(lean as avro.Schema, { registry: {} }).toBuffer(leanValue);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    frame.writeInt32BE(id, 1);
    expect(await codecs.promptRequest.decode(frame)).toEqual({ ...full, attempt: 0, customId: null, priority: 0 });
    // A schema that cannot be read as Sluice's says so, naming the id.
    const other = await fetch(`${schemaRegistryUrl}/subjects/unrelated-${Date.now()}-value/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({
        schema: JSON.stringify({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'int' }] }),
      }),
    });
    const otherId = ((await other.json()) as { id: number }).id;
    const bad = Buffer.from([0, 0, 0, 0, 0, 2]);
    bad.writeInt32BE(otherId, 1);
    await expect(codecs.promptRequest.decode(bad)).rejects.toThrow(new RegExp(`schema id ${otherId} cannot be read`));
  });

  // Issue 30 #1: Sluice sets the compatibility of its subjects itself, not only the stack's registry.
  it('sets BACKWARD on its subjects and on a lane subject, and leaves a stricter level an operator set', async () => {
    const { schemaRegistryUrl } = stackSettings();
    const codecs = await createSchemaCodecs({ registryUrl: schemaRegistryUrl });
    const level = async (subject: string) => {
      const res = await fetch(`${schemaRegistryUrl}/config/${subject}`);
      return res.ok ? ((await res.json()) as { compatibilityLevel: string }).compatibilityLevel : res.status;
    };
    expect(await level('sluice.v1.PromptRequest')).toBe('BACKWARD');
    const lane = `sluice.requests.compat${Date.now().toString(36)}-value`;
    expect(await level(lane)).toBe(404);
    await codecs.backwardCompatible(lane);
    expect(await level(lane)).toBe('BACKWARD');
    const strict = `sluice.requests.strict${Date.now().toString(36)}-value`;
    await fetch(`${schemaRegistryUrl}/config/${strict}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ compatibility: 'FULL_TRANSITIVE' }),
    });
    await codecs.backwardCompatible(strict);
    expect(await level(strict)).toBe('FULL_TRANSITIVE');
  });

  it('refuses to encode a record that does not fit the schema', async () => {
    const codecs = await createSchemaCodecs({ registryUrl: stackSettings().schemaRegistryUrl });
    await expect(codecs.promptRequest.encode({ jobId: 'x' } as unknown as PromptRequest)).rejects.toThrow();
  });
});
