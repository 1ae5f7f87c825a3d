import { Redis } from 'ioredis';
import { JobView, LiveCountsWriter, writeSinkCounts } from '@sluice/job-store';
import { createKafka } from '@sluice/kafka';
import type { Job } from '@sluice/schemas';
import { stackSettings, uniqueName } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { runKafkaTool } from '../stack/kafka-tools.js';
import { formatLag, lagReport } from '../sluice/lag.js';

describe('sluice lag (real Kafka and Redis)', () => {
  it("reads a group's lag as the log's end less its committed offsets, and a job's prompts still waiting", async () => {
    const s = stackSettings();
    const kafka = createKafka({ brokers: s.kafkaBrokers, clientId: uniqueName('lag') });
    const redis = new Redis(s.redisUrl);
    const admin = kafka.admin();
    const prefix = uniqueName('lagtest');
    const topic = `${prefix}.topic`;
    const groupId = `${prefix}.group`;
    await admin.connect();
    try {
      await kafka.ensureTopics([{ topic, partitions: 2 }]);
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic,
        messages: [0, 0, 0, 1, 1].map((partition, i) => ({ partition, value: `r${i}` })),
      });
      await producer.disconnect();
      // The group has read 2 of partition 0's 3 records and none of partition 1's 2.
      await admin.setOffsets({
        groupId,
        topic,
        partitions: [
          { partition: 0, offset: '2' },
          { partition: 1, offset: '0' },
        ],
      });
      const jobId = `job_${prefix}`;
      const job = { jobId, tenant: 't', status: 'sealed', accepted: 10, finalizedAt: null } as unknown as Job;
      await new JobView(redis).put(job);
      await writeSinkCounts(redis, jobId, { succeeded: 3, failed: 1, written: 4 });
      // As a dispatcher writes them: two prompts in hand, one sent to a delay topic.
      const live = new LiveCountsWriter(redis, 60_000);
      live.started(jobId);
      live.started(jobId);
      live.delayed(jobId);
      await live.flush();

      const r = await lagReport(admin, redis, prefix);
      expect(r.groups).toHaveLength(1);
      expect(r.groups[0]).toMatchObject({ group: groupId, state: 'Empty', members: 0, lag: 3 });
      expect(r.groups[0]!.topics).toEqual([{ topic, partitions: 2, committed: 2, end: 5, lag: 3 }]);
      expect(r.jobs.find((j) => j.jobId === jobId)).toEqual({
        jobId,
        tenant: 't',
        status: 'sealed',
        accepted: 10,
        answered: 4,
        inFlight: 2,
        retrying: 1,
        waiting: 6,
      });
      await live.close();
      expect(formatLag(r)).toContain(`${groupId}  Empty, 0 members, lag 3`);
      // Kafka's own tool (kafka-consumer-groups, from the stack's cache) reads the same lag.
      const tool = await runKafkaTool('consumer-groups', ['--describe', '--group', groupId], {
        broker: s.kafkaBrokers[0],
      });
      expect(tool.code, tool.stderr).toBe(0);
      const rows = tool.stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((c) => c[0] === groupId && c[1] === topic);
      expect(rows.map((c) => [Number(c[2]), c[3], Number(c[4]), c[5]]).sort()).toEqual([
        [0, '2', 3, '1'],
        [1, '0', 2, '2'],
      ]);

      // Read to the end: lag 0.
      await admin.setOffsets({
        groupId,
        topic,
        partitions: [
          { partition: 0, offset: '3' },
          { partition: 1, offset: '2' },
        ],
      });
      expect((await lagReport(admin, redis, prefix)).groups[0]!.lag).toBe(0);
    } finally {
      await admin.deleteGroups([groupId]).catch(() => undefined);
      await kafka.deleteTopics([topic]).catch(() => undefined);
      await admin.disconnect();
      redis.disconnect();
    }
  }, 60_000);
});
