import type { Redis } from 'ioredis';
import { laneLoadKey as loadKey, releasePlacement } from '@sluice/job-store';

// Picks the `count` least-loaded partitions of a lane and counts the job on them, atomically.
const pickScript = `
local key = KEYS[1]
local partitions = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
for p = 0, partitions - 1 do redis.call('ZADD', key, 'NX', 0, p) end
local picked = redis.call('ZRANGE', key, 0, count - 1)
for _, p in ipairs(picked) do redis.call('ZINCRBY', key, 1, p) end
return picked
`;

/**
 * Places jobs on the partitions of their lane with the fewest unfinished jobs, so that concurrent
 * jobs do not share partitions while there are enough: the dispatcher's fairness works across
 * partitions, and a job alone on its partition is never stuck behind another job's backlog.
 */
export class Placement {
  constructor(
    private readonly redis: Redis,
    private readonly lanePartitions: number,
  ) {}

  async place(provider: string, count: number): Promise<number[]> {
    const n = Math.max(1, Math.min(count, this.lanePartitions));
    const picked = (await this.redis.eval(pickScript, 1, loadKey(provider), this.lanePartitions, n)) as string[];
    return picked.map(Number).sort((a, b) => a - b);
  }

  /**
   * A job that was cancelled no longer loads its partitions (the sink releases a job it
   * finalizes); once per job, whoever releases it first.
   */
  async release(provider: string, jobId: string, partitions: number[]): Promise<void> {
    await releasePlacement(this.redis, provider, jobId, partitions);
  }

  async load(provider: string): Promise<Map<number, number>> {
    const flat = await this.redis.zrange(loadKey(provider), 0, -1, 'WITHSCORES');
    const out = new Map<number, number>();
    for (let i = 0; i < flat.length; i += 2) out.set(Number(flat[i]), Number(flat[i + 1]));
    return out;
  }
}
