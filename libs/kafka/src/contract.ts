import type { TopicSpec } from './types.js';

/**
 * The Kafka contract between Sluice's processes and with outside clients: every topic's name,
 * the headers records carry between topics, and a prompt's id. Every role imports it from here; no
 * other source file spells a topic or header name (contract.unit.test.ts holds the rest of the tree to
 * that). What outside producers see of it: docs/kafka-producers.md.
 */

/** Every topic Sluice makes begins with this. */
export const topicPrefix = 'sluice.';

/** Jobs' events (created, input_progress, sealed, cancelled, finalized), compacted by job id. */
export const jobsTopic = `${topicPrefix}jobs`;

/** The jobs topic as the API and the sink make it (whichever starts first). */
export function jobsTopicSpec(): TopicSpec {
  return { topic: jobsTopic, partitions: 6, config: { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '60000' } };
}

const lanePrefix = `${topicPrefix}requests.`;
/** A provider's lane: the prompts of every job of that provider, keyed by job id. */
export const laneTopic = (provider: string): string => `${lanePrefix}${provider}`;
/** The provider whose lane `topic` is, or undefined when it is not a lane. */
export const laneProvider = (topic: string): string | undefined =>
  topic.startsWith(lanePrefix) && topic.length > lanePrefix.length ? topic.slice(lanePrefix.length) : undefined;

/** A job's outcomes: one terminal record per prompt, result or error. */
export const resultsTopic = (jobId: string): string => `${topicPrefix}results.${jobId}`;

/** Records no role could take, with the reason (docs/kafka-producers.md). */
export const deadLetterTopic = `${topicPrefix}dead-letter`;

/** A prompt's id, the same in every record and file: `<jobId>:<row>`. */
export const promptId = (jobId: string, row: number): string => `${jobId}:${row}`;

/** The delay tiers, shortest first: a record waits in the shortest tier at least as long as its wait. */
export const delayTiers: ReadonlyArray<{ topic: string; ms: number }> = [
  { topic: `${topicPrefix}delay.5s`, ms: 5_000 },
  { topic: `${topicPrefix}delay.30s`, ms: 30_000 },
  { topic: `${topicPrefix}delay.2m`, ms: 120_000 },
  { topic: `${topicPrefix}delay.10m`, ms: 600_000 },
];

/** The tier a record that waits `waitMs` goes to. */
export function tierFor(waitMs: number): string {
  return (delayTiers.find((t) => t.ms >= waitMs) ?? delayTiers[delayTiers.length - 1]!).topic;
}

/** The delay topics, as topic specs. */
export function tierTopics(): TopicSpec[] {
  return delayTiers.map(({ topic }) => ({ topic, partitions: 6 }));
}

/** Headers that travel with a prompt between its lane and the delay topics. */
export const promptHeaders = {
  /** When a delayed record is due (ms since the epoch). */
  dueAt: 'sluice-due-at',
  /** The lane topic and partition a delayed record goes back to. */
  lane: 'sluice-lane',
  lanePartition: 'sluice-lane-partition',
  /** JSON array of the prompt's attempts so far. */
  attempts: 'sluice-attempts',
} as const;

/** Headers a dead letter carries beside the original record's own. */
export const deadLetterHeaders = {
  /** Why (a code of DeadLetterReason). */
  reason: 'sluice-dl-reason',
  /** Why, in a sentence (never prompt text). */
  message: 'sluice-dl-message',
  /** The role that wrote it: dispatcher, delay, sink. */
  stage: 'sluice-dl-stage',
  /** The topic the record was on its way to: where a re-drive sends it. */
  target: 'sluice-dl-target',
  /** Where it was read from, as topic/partition/offset, when it was read from a topic. */
  source: 'sluice-dl-source',
  /** When (ms since the epoch). */
  at: 'sluice-dl-at',
} as const;

type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;

/** A header's text (its first value), or undefined when the record does not carry it. */
export function headerText(h: Record<string, HeaderValue> | undefined, name: string): string | undefined {
  const v = h?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.toString();
}
