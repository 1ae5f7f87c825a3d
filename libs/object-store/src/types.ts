import type { Readable } from 'node:stream';
import { SluiceError } from '@sluice/errors';

export interface PutOptions {
  /** Write only if no object of this name exists (GCS: ifGenerationMatch 0). @default false */
  ifAbsent?: boolean;
  /** @default application/octet-stream */
  contentType?: string;
}

/**
 * Where Sluice keeps results: names are paths under one bucket or directory. Every adapter passes
 * the same test suite (test/object-store.test.ts).
 */
export interface ObjectStore {
  /** gs://bucket/name or file:///abs/path: how users and manifests name an object. */
  uri(name: string): string;
  /** Writes an object whole; with `ifAbsent`, throws ObjectExistsError when it exists already. */
  put(name: string, body: Buffer | string, options?: PutOptions): Promise<void>;
  /** The object's bytes, or undefined when there is none. */
  get(name: string): Promise<Buffer | undefined>;
  /** Names under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Deletes an object; one that is not there is fine. */
  delete(name: string): Promise<void>;
  /** Streams the object (for downloads). */
  read(name: string): Readable;
  /** A URL anyone holding it can read the object with until it expires; undefined when the store has none. */
  signedUrl(name: string, expiresInMs: number): Promise<string | undefined>;
}

export class ObjectExistsError extends SluiceError {
  constructor(name: string) {
    super('OBJECT_EXISTS', `object ${name} exists already`, { context: { name } });
    this.name = 'ObjectExistsError';
  }
}
