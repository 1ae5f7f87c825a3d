/**
 * `sluice dead-letters`: what sits on sluice.dead-letter (records the pipeline could not take or
 * deliver, with the reason), and re-driving them to where they were going once the cause is fixed.
 * It never prints a record's value (prompt text): only its reason, route and job.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys } from '@sluice/job-store';
import { deadLetterHeaders, deadLetterTopic, type Message, type SluiceKafka } from '@sluice/kafka';

export interface Letter {
  partition: number;
  offset: string;
  reason: string;
  message: string;
  stage: string;
  target: string;
  source: string | null;
  at: number;
  /** The record's key: its job id, for Sluice's records. */
  jobId: string | null;
  bytes: number;
  /** The original record (its own headers, without the dead letter's). */
  record: Pick<Message, 'key' | 'value' | 'headers'>;
}

export interface LetterFilter {
  reason?: string;
  jobId?: string;
  stage?: string;
}

/** The dead letters `filter` picks, read from the beginning to the topic's end as it is now. */
export async function readDeadLetters(kafka: SluiceKafka, filter: LetterFilter = {}): Promise<Letter[]> {
  if (!(await kafka.topicExists(deadLetterTopic, { fresh: true }))) return [];
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `sluice-dead-letters-cli-${randomBytes(4).toString('hex')}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200 });
  const out: Letter[] = [];
  try {
    const ends = new Map(
      (await admin.fetchTopicOffsets(deadLetterTopic))
        .filter((p) => Number(p.high) > Number(p.low))
        .map((p) => [p.partition, Number(p.high)]),
    );
    if (ends.size === 0) return [];
    const left = new Set(ends.keys());
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    await consumer.connect();
    await consumer.subscribe({ topic: deadLetterTopic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message: m }) => {
        const end = ends.get(partition);
        if (end === undefined || Number(m.offset) >= end) return;
        const h = (n: string) => m.headers?.[n]?.toString();
        const own = new Set<string>(Object.values(deadLetterHeaders));
        const letter: Letter = {
          partition,
          offset: m.offset,
          reason: h(deadLetterHeaders.reason) ?? 'UNKNOWN',
          message: h(deadLetterHeaders.message) ?? '',
          stage: h(deadLetterHeaders.stage) ?? '',
          target: h(deadLetterHeaders.target) ?? '',
          source: h(deadLetterHeaders.source) ?? null,
          at: Number(h(deadLetterHeaders.at) ?? 0),
          jobId: m.key?.toString() ?? null,
          bytes: m.value?.length ?? 0,
          record: {
            key: m.key,
            value: m.value,
            headers: Object.fromEntries(
              Object.entries(m.headers ?? {}).filter(([k]) => !own.has(k)),
            ) as Message['headers'],
          },
        };
        if (
          (!filter.reason || letter.reason === filter.reason) &&
          (!filter.jobId || letter.jobId === filter.jobId) &&
          (!filter.stage || letter.stage === filter.stage)
        )
          out.push(letter);
        if (Number(m.offset) >= end - 1) {
          left.delete(partition);
          if (left.size === 0) done();
        }
      },
    });
    await Promise.race([
      finished,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`${deadLetterTopic} not read to its end within 60 s`)), 60_000),
      ),
    ]);
  } finally {
    await consumer.disconnect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
  return out.sort((a, b) => a.at - b.at || a.partition - b.partition || Number(a.offset) - Number(b.offset));
}

/** Where re-driven letters are noted, so that a second re-drive does not send them again. */
const redrivenKey = redisKeys.redrivenLetters;
const letterId = (l: Letter) => `${l.partition}/${l.offset}`;

export interface RedriveReport {
  redriven: number;
  /** Re-driven before (sent again only with `again`). */
  skipped: number;
  /** Could not be sent, with why (their target does not exist, or is not named). */
  refused: Array<{ partition: number; offset: string; target: string; why: string }>;
}

/**
 * Sends each letter's original record to its target topic (the lane a prompt was on, the
 * results topic an outcome was for). A record whose cause is not fixed comes back as a new dead
 * letter. Each re-driven letter is noted in Redis; `again` sends noted ones too.
 */
export async function redrive(
  kafka: SluiceKafka,
  redis: Redis,
  letters: Letter[],
  o: { again?: boolean; dryRun?: boolean } = {},
): Promise<RedriveReport> {
  const report: RedriveReport = { redriven: 0, skipped: 0, refused: [] };
  const producer = kafka.producer();
  if (!o.dryRun) await producer.connect();
  try {
    for (const l of letters) {
      if (!o.again && (await redis.sismember(redrivenKey, letterId(l))) === 1) {
        report.skipped++;
        continue;
      }
      const why = !l.target
        ? 'it names no target topic'
        : !(await kafka.topicExists(l.target, { fresh: true }))
          ? `topic ${l.target} does not exist`
          : undefined;
      if (why) {
        report.refused.push({ partition: l.partition, offset: l.offset, target: l.target, why });
        continue;
      }
      if (!o.dryRun) {
        await producer.send({ topic: l.target, acks: -1, messages: [l.record] });
        await redis.sadd(redrivenKey, letterId(l));
      }
      report.redriven++;
    }
  } finally {
    if (!o.dryRun) await producer.disconnect();
  }
  return report;
}

export function formatLetters(letters: Letter[]): string {
  if (letters.length === 0) return `${deadLetterTopic}: no dead letters match`;
  const byReason = new Map<string, number>();
  for (const l of letters) byReason.set(l.reason, (byReason.get(l.reason) ?? 0) + 1);
  const lines = [
    `${deadLetterTopic}: ${letters.length} dead letters (${[...byReason].map(([r, n]) => `${r} ${n}`).join(', ')})`,
  ];
  for (const l of letters)
    lines.push(
      `  ${new Date(l.at).toISOString()}  ${l.partition}/${l.offset}  ${l.reason}  ${l.stage}  job ${l.jobId ?? '-'}` +
        `  from ${l.source ?? '-'}  to ${l.target || '-'}  ${l.bytes} B: ${l.message}`,
    );
  return lines.join('\n');
}
