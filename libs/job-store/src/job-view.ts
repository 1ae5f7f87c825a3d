import type { Redis } from 'ioredis';
import type { Job } from '@sluice/schemas';
import { readLiveCounts } from './live-counts.js';
import { readSinkCounts } from './sink-counts.js';
import { redisKeys } from './keys.js';

const jobKey = redisKeys.job;
const tenantKey = redisKeys.tenantJobs;
/** A tenant's jobs not yet ended (open, sealed, running), by creation time: its quotas count them. */
const openKey = redisKeys.tenantOpen;
const endedStatuses = new Set(['cancelled', 'completed', 'completed_with_errors', 'failed']);
/** Whether a job's status is final. */
export const isEnded = (status: string): boolean => endedStatuses.has(status);
export const viewReadyKey = redisKeys.viewReady;
/**
 * A lane's note that one of its buckets (provider:model:key) paces under half of its stated
 * limit with no 429: the dispatcher writes it while that lasts, with a short expiry.
 */
export const heldBackKey = redisKeys.heldBack;

/** Why a lane runs under half of its stated limit, as the dispatcher noted it. */
export interface HeldBack {
  reason: string;
  /** ms since the epoch */
  since: number;
  keyId: string;
  bucket: string;
}

const putUnlessEndedScript = `
local was = redis.call('GET', KEYS[1])
if was then
  local status = cjson.decode(was).status
  if status ~= 'open' and status ~= 'sealed' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3]) else redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
`;

const putIfNewerScript = `
local was = redis.call('GET', KEYS[1])
if was then
  local ok, job = pcall(cjson.decode, was)
  local at = ok and type(job) == 'table' and tonumber(job.updatedAt) or nil
  if at and at > tonumber(ARGV[4]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3]) else redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
`;

/** A rebuild's note that it is in progress (see JobView.beginRebuild). */
export const rebuildKey = redisKeys.viewRebuild;
const markReadyScript = `
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
`;

/** Progress counters the stream processors keep per job (0 until they run). */
export interface RunCounts {
  /** Prompts a dispatcher holds now: waiting for a grant, or at the provider (LiveCountsWriter). */
  inFlight: number;
  /** Outcomes the sink has written. */
  succeeded: number;
  failed: number;
  /** Prompts waiting in a delay topic to be tried again (LiveCountsWriter). */
  retrying: number;
}

/**
 * The Redis view of jobs that the API reads. The compacted topic sluice.jobs is the source of
 * truth; this view is written after each event and rebuilt from the topic when empty.
 */
export class JobView {
  constructor(private readonly redis: Redis) {}

  async put(job: Job): Promise<void> {
    const m = this.redis
      .multi()
      .set(jobKey(job.jobId), JSON.stringify(job))
      .zadd(tenantKey(job.tenant), job.createdAt, job.jobId);
    if (isEnded(job.status)) m.zrem(openKey(job.tenant), job.jobId);
    else m.zadd(openKey(job.tenant), job.createdAt, job.jobId);
    await m.exec();
  }

  /**
   * Puts a job unless the view already has it ended (cancelled, completed, failed): an upload's
   * chunk committed before a cancel must not put the job back to open after it. False when it
   * did not put.
   */
  async putUnlessEnded(job: Job): Promise<boolean> {
    const r = await this.redis.eval(
      putUnlessEndedScript,
      3,
      jobKey(job.jobId),
      tenantKey(job.tenant),
      openKey(job.tenant),
      JSON.stringify(job),
      job.createdAt,
      job.jobId,
      isEnded(job.status) ? '0' : '1',
    );
    return r === 1;
  }

  /**
   * Puts a job unless the view has a later state of it (a rebuild from sluice.jobs must not put
   * back a state that a request wrote over while the rebuild read). False when it did not put.
   */
  async putIfNewer(job: Job): Promise<boolean> {
    const r = await this.redis.eval(
      putIfNewerScript,
      3,
      jobKey(job.jobId),
      tenantKey(job.tenant),
      openKey(job.tenant),
      JSON.stringify(job),
      job.createdAt,
      job.jobId,
      job.updatedAt,
      isEnded(job.status) ? '0' : '1',
    );
    return r === 1;
  }

  async get(id: string): Promise<Job | undefined> {
    const raw = await this.redis.get(jobKey(id));
    return raw ? (JSON.parse(raw) as Job) : undefined;
  }

  /** Every job in the view (SCAN: no snapshot; jobs written meanwhile may or may not be seen). */
  async *scan(): AsyncGenerator<Job> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', jobKey('*'), 'COUNT', 500);
      cursor = next;
      const ids = keys.filter((k) => !k.slice(jobKey('').length).includes(':'));
      if (ids.length === 0) continue;
      for (const raw of await this.redis.mget(ids)) if (raw) yield JSON.parse(raw) as Job;
    } while (cursor !== '0');
  }

  async list(tenant: string, limit: number, before?: number): Promise<Job[]> {
    const ids = await this.redis.zrevrangebyscore(
      tenantKey(tenant),
      before === undefined ? '+inf' : `(${before}`,
      '-inf',
      'LIMIT',
      0,
      limit,
    );
    if (ids.length === 0) return [];
    const raws = await this.redis.mget(ids.map(jobKey));
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as Job);
  }

  /**
   * The tenant's jobs not yet ended, as the view has them (every write of a job keeps the set; a
   * rebuild from sluice.jobs makes it again). A member the view holds ended is dropped.
   */
  async openJobs(tenant: string): Promise<Job[]> {
    const ids = await this.redis.zrange(openKey(tenant), 0, -1);
    if (ids.length === 0) return [];
    const jobs: Job[] = [];
    const ended: string[] = [];
    const raws = await this.redis.mget(ids.map(jobKey));
    raws.forEach((raw, i) => {
      const job = raw ? (JSON.parse(raw) as Job) : undefined;
      if (job && !isEnded(job.status)) jobs.push(job);
      else ended.push(ids[i]!);
    });
    if (ended.length > 0) await this.redis.zrem(openKey(tenant), ...ended);
    return jobs;
  }

  /**
   * A job's progress: outcomes the sink has written (succeeded, failed) and the live counts the
   * dispatchers keep (in flight, waiting in a delay topic).
   */
  async counts(id: string): Promise<RunCounts> {
    const [sink, live] = await Promise.all([readSinkCounts(this.redis, id), readLiveCounts(this.redis, id)]);
    return { ...live, succeeded: sink.succeeded, failed: sink.failed };
  }

  /** The lane's held-back notes, for a provider's models (empty while it runs at its limits). */
  async heldBack(provider: string, model?: string): Promise<HeldBack[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', heldBackKey(provider, '*'), 'COUNT', 100);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const notes = (await this.redis.mget(keys))
      .filter((r): r is string => r !== null)
      .map((r) => JSON.parse(r) as HeldBack);
    return model === undefined ? notes : notes.filter((n) => n.bucket.startsWith(`${provider}:${model}:`));
  }

  async isReady(): Promise<boolean> {
    return (await this.redis.exists(viewReadyKey)) === 1;
  }

  /**
   * Notes a rebuild in progress, for `markReady`: a Redis that loses its data during the rebuild
   * loses this note too, and the rebuild (whose reading may predate jobs lost then) does not mark
   * the view whole.
   */
  async beginRebuild(): Promise<string> {
    const token = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
    await this.redis.set(rebuildKey(token), '1', 'EX', 3_600);
    return token;
  }

  /** Marks the view whole; after a rebuild, only if Redis kept its note (true when marked). */
  async markReady(token?: string): Promise<boolean> {
    if (token === undefined) {
      await this.redis.set(viewReadyKey, String(Date.now()));
      return true;
    }
    const r = await this.redis.eval(markReadyScript, 2, rebuildKey(token), viewReadyKey, String(Date.now()));
    return r === 1;
  }
}
