import { readFile } from 'node:fs/promises';
import { createGcsObjectStore } from './gcs.js';
import { createLocalObjectStore } from './local.js';
import type { ObjectStore } from './types.js';

export interface ObjectStoreSettings {
  /** A GCS bucket; absent: the local directory. */
  bucket?: string;
  /** The GCS emulator's URL, for local stacks and tests. */
  gcsEndpoint?: string;
  projectId?: string;
  /** Where objects go when no bucket is set. */
  localDir: string;
  /** A service-account key file (JSON), for signing URLs off GCP; on GKE the workload identity signs. */
  credentialsFile?: string;
}

/** The results store a process's settings name: GCS when a bucket is set, else a local directory. */
export async function openObjectStore(s: ObjectStoreSettings): Promise<ObjectStore> {
  if (!s.bucket) return createLocalObjectStore({ root: s.localDir });
  const credentials = s.credentialsFile
    ? (JSON.parse(await readFile(s.credentialsFile, 'utf8')) as { client_email: string; private_key: string })
    : undefined;
  const store = createGcsObjectStore({
    bucket: s.bucket,
    apiEndpoint: s.gcsEndpoint,
    projectId: s.projectId,
    credentials,
  });
  // Against an emulator the bucket may not exist yet; real buckets are made by infra/.
  if (s.gcsEndpoint) await store.ensureBucket();
  return store;
}
