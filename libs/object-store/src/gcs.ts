import { Storage, type StorageOptions } from '@google-cloud/storage';
import { ObjectExistsError, type ObjectStore, type PutOptions } from './types.js';

export interface GcsObjectStoreOptions {
  bucket: string;
  /** An emulator's URL (fake-gcs-server); absent: Google Cloud Storage. */
  apiEndpoint?: string;
  projectId?: string;
  /** Service-account credentials; signed URLs need a private key (or IAM signBlob on GKE). */
  credentials?: StorageOptions['credentials'];
}

function status(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** Objects in one GCS bucket through @google-cloud/storage; writes are single requests. */
export function createGcsObjectStore(o: GcsObjectStoreOptions): ObjectStore & { ensureBucket(): Promise<void> } {
  const storage = new Storage({ apiEndpoint: o.apiEndpoint, projectId: o.projectId, credentials: o.credentials });
  const bucket = storage.bucket(o.bucket);
  return {
    /** Creates the bucket when missing (local stacks and tests; production buckets come from infra/). */
    async ensureBucket() {
      const [exists] = await bucket.exists();
      if (!exists)
        await storage.createBucket(o.bucket).catch((err: unknown) => {
          if (status(err) !== 409) throw err;
        });
    },
    uri: (name) => `gs://${o.bucket}/${name}`,
    async put(name: string, body: Buffer | string, options: PutOptions = {}) {
      try {
        await bucket.file(name).save(body, {
          resumable: false,
          contentType: options.contentType ?? 'application/octet-stream',
          preconditionOpts: options.ifAbsent ? { ifGenerationMatch: 0 } : undefined,
        });
      } catch (err) {
        if (options.ifAbsent && status(err) === 412) throw new ObjectExistsError(name);
        throw err;
      }
    },
    async get(name) {
      try {
        const [data] = await bucket.file(name).download();
        return data;
      } catch (err) {
        if (status(err) === 404) return undefined;
        throw err;
      }
    },
    async list(prefix) {
      const [files] = await bucket.getFiles({ prefix });
      return files.map((f) => f.name).sort();
    },
    async delete(name) {
      await bucket.file(name).delete({ ignoreNotFound: true });
    },
    read: (name) => bucket.file(name).createReadStream(),
    async signedUrl(name, expiresInMs) {
      const [url] = await bucket.file(name).getSignedUrl({
        version: 'v4',
        action: 'read',
        expires: Date.now() + expiresInMs,
      });
      return url;
    },
  };
}
