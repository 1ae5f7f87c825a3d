import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { stackSettings, uniqueName } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGcsObjectStore, createLocalObjectStore, ObjectExistsError, type ObjectStore } from '../src/index.js';

const s = stackSettings();
let dir: string;
// Signed URLs are signed locally with a service account's key; the emulator serves them.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const credentials = {
  client_email: 'sluice-test@sluice-local.iam.gserviceaccount.com',
  private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-objects-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const adapters: Array<[string, () => Promise<ObjectStore>]> = [
  ['local directory', async () => createLocalObjectStore({ root: join(dir, uniqueName('store')) })],
  [
    'GCS (fake-gcs-server)',
    async () => {
      const store = createGcsObjectStore({
        bucket: uniqueName('objects'),
        apiEndpoint: s.gcsEndpoint,
        projectId: s.pubsubProject,
        credentials,
      });
      await store.ensureBucket();
      return store;
    },
  ],
];

describe.each(adapters)('object store: %s', (name, make) => {
  it('writes, reads, lists by prefix and deletes', async () => {
    const store = await make();
    await store.put('job_1/results/part-0-0-9.jsonl', '{"a":1}\n', { contentType: 'application/x-ndjson' });
    await store.put('job_1/results/part-0-10-19.jsonl', Buffer.from('{"a":2}\n'));
    await store.put('job_1/manifest.json', '{}');
    await store.put('job_10/manifest.json', '{}');
    expect((await store.get('job_1/results/part-0-0-9.jsonl'))?.toString()).toBe('{"a":1}\n');
    expect(await store.get('job_1/nothing.json')).toBeUndefined();
    expect(await store.list('job_1/results/')).toEqual([
      'job_1/results/part-0-0-9.jsonl',
      'job_1/results/part-0-10-19.jsonl',
    ]);
    expect(await store.list('job_1/')).toHaveLength(3);
    expect(await text(store.read('job_1/results/part-0-10-19.jsonl'))).toBe('{"a":2}\n');
    await store.delete('job_1/manifest.json');
    await store.delete('job_1/manifest.json'); // gone already: fine
    expect(await store.get('job_1/manifest.json')).toBeUndefined();
  });

  it('refuses a second ifAbsent write of a name and keeps the first content', async () => {
    const store = await make();
    await store.put('job_2/_index/0-0.json', '{"v":1}', { ifAbsent: true });
    const second = store.put('job_2/_index/0-0.json', '{"v":2}', { ifAbsent: true });
    await expect(second).rejects.toBeInstanceOf(ObjectExistsError);
    await expect(second).rejects.toMatchObject({ code: 'OBJECT_EXISTS' });
    expect((await store.get('job_2/_index/0-0.json'))?.toString()).toBe('{"v":1}');
    // Without the precondition a write replaces the object.
    await store.put('job_2/_index/0-0.json', '{"v":3}');
    expect((await store.get('job_2/_index/0-0.json'))?.toString()).toBe('{"v":3}');
  });

  it('lets exactly one of many racing ifAbsent writers win', async () => {
    const store = await make();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put('job_3/manifest.json', `{"writer":${i}}`, { ifAbsent: true })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').every((r) => r.reason instanceof ObjectExistsError)).toBe(
      true,
    );
  });

  it('names objects with a URI users can open', async () => {
    const store = await make();
    const uri = store.uri('job_4/manifest.json');
    expect(uri).toMatch(name.startsWith('GCS') ? /^gs:\/\/objects-[^/]+\/job_4\/manifest\.json$/ : /^file:\/\/\//);
  });
});

describe('GCS signed URLs', () => {
  it('gives a V4 signed URL that reads the object', async () => {
    const store = createGcsObjectStore({
      bucket: uniqueName('signed'),
      apiEndpoint: s.gcsEndpoint,
      projectId: s.pubsubProject,
      credentials,
    });
    await store.ensureBucket();
    await store.put('job_5/results/part-0-0-0.jsonl', '{"ok":true}\n');
    const url = await store.signedUrl('job_5/results/part-0-0-0.jsonl', 15 * 60_000);
    expect(url).toMatch(/X-Goog-Algorithm=GOOG4-RSA-SHA256/);
    expect(url).toMatch(/X-Goog-Signature=/);
    const res = await fetch(url!);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('{"ok":true}\n');
  });
});
