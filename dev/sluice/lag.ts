/**
 * `sluice lag`: per consumer group and topic, how far its committed offsets are behind the log's
 * end, and per unfinished job, the prompts not answered yet. What an operator reads from a Kafka
 * UI, without one: Sluice's groups commit the position past transaction markers when idle, so an
 * idle group reads 0.
 */
import type { Admin } from 'kafkajs';
import type { Redis } from 'ioredis';
import { JobView } from '@sluice/job-store';

export interface GroupLag {
  group: string;
  /** The group's state as the coordinator tells it: Stable, Empty, PreparingRebalance, ... */
  state: string;
  members: number;
  topics: Array<{ topic: string; partitions: number; committed: number; end: number; lag: number }>;
  lag: number;
}

export interface JobBacklog {
  jobId: string;
  tenant: string;
  status: string;
  accepted: number;
  answered: number;
  inFlight: number;
  retrying: number;
  /** Accepted prompts without an outcome yet (in flight and retrying included). */
  waiting: number;
}

export interface LagReport {
  groups: GroupLag[];
  jobs: JobBacklog[];
}

/** Every consumer group whose id starts with `prefix` (Sluice's: "sluice"), and every unfinished job. */
export async function lagReport(admin: Admin, redis: Redis, prefix = 'sluice'): Promise<LagReport> {
  const listed = (await admin.listGroups()).groups.filter((g) => g.groupId.startsWith(prefix));
  const described = listed.length > 0 ? await admin.describeGroups(listed.map((g) => g.groupId)) : { groups: [] };
  const ends = new Map<string, Map<number, number>>();
  const endOf = async (topic: string) => {
    let e = ends.get(topic);
    if (!e) {
      e = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]));
      ends.set(topic, e);
    }
    return e;
  };
  const groups: GroupLag[] = [];
  for (const g of described.groups) {
    const topics: GroupLag['topics'] = [];
    for (const t of await admin.fetchOffsets({ groupId: g.groupId })) {
      let end: Map<number, number>;
      try {
        end = await endOf(t.topic);
      } catch {
        continue; // a topic deleted since (a finished job's results topic)
      }
      // Every partition of the topic: one the group never committed on has its whole log behind.
      const done = new Map(t.partitions.map((p) => [p.partition, Math.max(0, Number(p.offset))]));
      let committed = 0;
      let total = 0;
      let lag = 0;
      for (const [partition, e] of end) {
        const c = done.get(partition) ?? 0;
        committed += c;
        total += e;
        lag += Math.max(0, e - c);
      }
      topics.push({ topic: t.topic, partitions: end.size, committed, end: total, lag });
    }
    groups.push({
      group: g.groupId,
      state: g.state,
      members: g.members.length,
      topics,
      lag: topics.reduce((n, t) => n + t.lag, 0),
    });
  }
  groups.sort((a, b) => a.group.localeCompare(b.group));

  const view = new JobView(redis);
  const jobs: JobBacklog[] = [];
  for await (const job of view.scan()) {
    if (job.finalizedAt !== null || job.status === 'cancelled') continue;
    const c = await view.counts(job.jobId);
    const answered = c.succeeded + c.failed;
    jobs.push({
      jobId: job.jobId,
      tenant: job.tenant,
      status: job.status,
      accepted: job.accepted,
      answered,
      inFlight: c.inFlight,
      retrying: c.retrying,
      waiting: Math.max(0, job.accepted - answered),
    });
  }
  jobs.sort((a, b) => b.waiting - a.waiting || a.jobId.localeCompare(b.jobId));
  return { groups, jobs };
}

/** The report as a table for a terminal. */
export function formatLag(r: LagReport): string {
  const out: string[] = [];
  if (r.groups.length === 0) out.push('no consumer groups of Sluice');
  for (const g of r.groups) {
    out.push(`${g.group}  ${g.state}, ${g.members} member${g.members === 1 ? '' : 's'}, lag ${g.lag}`);
    for (const t of g.topics)
      out.push(`  ${t.topic}  ${t.partitions} partitions, committed ${t.committed} of ${t.end}, lag ${t.lag}`);
  }
  out.push('');
  if (r.jobs.length === 0) out.push('no unfinished jobs');
  else out.push('unfinished jobs (prompts waiting for an outcome):');
  for (const j of r.jobs)
    out.push(
      `  ${j.jobId}  ${j.tenant}  ${j.status}: ${j.waiting} waiting of ${j.accepted} (${j.inFlight} in flight, ${j.retrying} retrying)`,
    );
  return out.join('\n');
}
