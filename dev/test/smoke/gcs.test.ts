import { Storage } from '@google-cloud/storage';
import { stackSettings, uniqueName } from '@sluice/testing';
import { afterAll, describe, expect, it } from 'vitest';

describe('GCS JSON API (fake-gcs-server)', () => {
  const settings = stackSettings();
  const storage = new Storage({ apiEndpoint: settings.gcsEndpoint, projectId: settings.pubsubProject });
  const bucketName = uniqueName('smoke-bucket');

  afterAll(async () => {
    await storage
      .bucket(bucketName)
      .deleteFiles({ force: true })
      .catch(() => undefined);
    await storage
      .bucket(bucketName)
      .delete()
      .catch(() => undefined);
  });

  it('creates a bucket, uploads simply and resumably, lists and downloads', async () => {
    const [bucket] = await storage.createBucket(bucketName);
    expect(bucket.name).toBe(bucketName);

    const small = 'one line of results\n';
    await bucket.file('parts/simple.jsonl').save(small, { resumable: false, contentType: 'application/x-ndjson' });

    // Large enough to span several chunks of a resumable session.
    const big = Buffer.alloc(3 * 256 * 1024 + 123, 'x');
    await bucket.file('parts/resumable.bin').save(big, { resumable: true, chunkSize: 256 * 1024 });

    const [files] = await bucket.getFiles({ prefix: 'parts/' });
    expect(files.map((f) => f.name).sort()).toEqual(['parts/resumable.bin', 'parts/simple.jsonl']);

    const [simple] = await bucket.file('parts/simple.jsonl').download();
    expect(simple.toString()).toBe(small);
    const [resumable] = await bucket.file('parts/resumable.bin').download();
    expect(resumable.length).toBe(big.length);
    expect(resumable.equals(big)).toBe(true);
  });

  it('refuses a write whose generation precondition does not hold', async () => {
    const bucket = storage.bucket(bucketName);
    const file = bucket.file('manifest.json');
    await file.save('{"v":1}', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    await expect(
      file.save('{"v":2}', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
    ).rejects.toMatchObject({ code: 412 });
    const [content] = await file.download();
    expect(content.toString()).toBe('{"v":1}');
  });
});
