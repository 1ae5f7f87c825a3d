import { randomBytes } from 'node:crypto';

/**
 * A name no other test (or earlier run) uses: topics, groups, buckets, subjects and keys are
 * unique per test so that tests never see each other's data.
 * Lowercase letters, digits and dashes only, valid for Kafka topics and GCS buckets alike.
 */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}
