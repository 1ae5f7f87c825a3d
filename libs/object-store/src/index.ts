export { ObjectExistsError, type ObjectStore, type PutOptions } from './types.js';
export { createLocalObjectStore, type LocalObjectStoreOptions } from './local.js';
export { createGcsObjectStore, type GcsObjectStoreOptions } from './gcs.js';
export { openObjectStore, type ObjectStoreSettings } from './open.js';
export {
  indexPrefix,
  indexTag,
  jobObjectPrefix,
  manifestName,
  type Counts,
  type PartFile,
  type PartIndex,
} from './layout.js';
export { maxRow, RowSet } from './row-set.js';
export {
  partSummary,
  readJobIndex,
  rollupName,
  rollupPrefix,
  rollupSeq,
  type IndexRollup,
  type JobIndex,
  type PartSummary,
} from './job-index.js';
