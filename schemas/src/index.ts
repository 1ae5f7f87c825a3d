export * from './generated.js';
export { createSchemaCodecs, subjects, type Codec, type SchemaCodecs, type SchemaCodecOptions } from './codec.js';
export { backwardIncompatibility } from './compat.js';
export { jobEventSchema, promptOutcomeSchema, promptRequestSchema, loadSchemaFiles } from './schemas.js';
