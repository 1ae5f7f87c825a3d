export { ObjectExistsError, type ObjectStore, type PutOptions } from './types.js';
export { createLocalObjectStore, type LocalObjectStoreOptions } from './local.js';
export { createGcsObjectStore, type GcsObjectStoreOptions } from './gcs.js';
export { openObjectStore, type ObjectStoreSettings } from './open.js';
export {
  indexPrefix,
  jobObjectPrefix,
  manifestName,
  readCommittedParts,
  type Counts,
  type PartFile,
  type PartIndex,
} from './layout.js';
