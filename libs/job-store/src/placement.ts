import type { Redis } from 'ioredis';
import { redisKeys } from './keys.js';

/** A lane's load: per partition, the unfinished jobs placed on it (a sorted set). */
export const laneLoadKey = redisKeys.laneLoad;
const releasedKey = redisKeys.released;

// Takes a job's count off each of its partitions, once per job whoever asks (a cancel and the
// finalization that follows it, a sink that finalizes again after a crash).
const releaseScript = `
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV do redis.call('ZINCRBY', KEYS[1], -1, ARGV[i]) end
return 1
`;

/**
 * A job that ended (completed, failed or cancelled) no longer loads its lane's partitions; true
 * the first time for a job, false after (nothing is taken off twice).
 */
export async function releasePlacement(
  redis: Redis,
  provider: string,
  jobId: string,
  partitions: readonly number[],
): Promise<boolean> {
  if (partitions.length === 0) return false;
  const thirtyDaysS = 30 * 86_400;
  const r = await redis.eval(
    releaseScript,
    2,
    laneLoadKey(provider),
    releasedKey(jobId),
    thirtyDaysS,
    ...partitions.map(String),
  );
  return r === 1;
}
