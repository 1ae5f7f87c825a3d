import type { Message, Producer } from 'kafkajs';
import { sendUntilWritten } from './send.js';
import type { Logger, TopicSpec } from './types.js';
import { deadLetterHeaders, deadLetterTopic } from './contract.js';

/**
 * Where a record goes that Sluice cannot take or cannot deliver, with the reason: nothing is
 * dropped, and no partition waits on it. `npm run sluice -- dead-letters` lists and re-drives them.
 */
export function deadLetterSpec(): TopicSpec {
  // Kept a month: long enough for an operator to read, fix and re-drive.
  return { topic: deadLetterTopic, partitions: 3, config: { 'retention.ms': String(30 * 24 * 3_600_000) } };
}

export type DeadLetterReason =
  /** Not a record of its topic's schema (not Avro, unknown schema id, no value). */
  | 'UNDECODABLE'
  /** Its job does not exist. */
  | 'JOB_UNKNOWN'
  /** Its tenant is not its job's. */
  | 'TENANT_MISMATCH'
  /** Its job has ended (completed or failed): it has its results already. */
  | 'JOB_ENDED'
  /** Its row index is outside [0, total) of its job, or outside [0, 2^32). */
  | 'ROW_OUT_OF_RANGE'
  /** Its model is not one its job's lane serves. */
  | 'MODEL_NOT_ALLOWED'
  /** The topic it was to be written to does not exist. */
  | 'TOPIC_MISSING'
  /** A delayed prompt names no lane, or one that does not exist. */
  | 'LANE_UNKNOWN';

export interface DeadLetter {
  reason: DeadLetterReason;
  message: string;
  /** The topic the record was on its way to. */
  target: string;
  source?: { topic: string; partition: number; offset: string | number };
  key?: Message['key'];
  value: Message['value'];
  /** The record's own headers, kept (a dead letter's own are added). */
  headers?: Message['headers'];
}

/** Writes dead letters, each until it is written (a dead letter is the record's only copy). */
export class DeadLetters {
  constructor(
    private readonly producer: Producer,
    private readonly o: { stage: string; running: () => boolean; log: Logger },
  ) {}

  async send(d: DeadLetter): Promise<void> {
    const own: Record<string, string> = {
      [deadLetterHeaders.reason]: d.reason,
      [deadLetterHeaders.message]: d.message,
      [deadLetterHeaders.stage]: this.o.stage,
      [deadLetterHeaders.target]: d.target,
      [deadLetterHeaders.at]: String(Date.now()),
    };
    if (d.source) own[deadLetterHeaders.source] = `${d.source.topic}/${d.source.partition}/${d.source.offset}`;
    await sendUntilWritten(
      this.producer,
      {
        topic: deadLetterTopic,
        acks: -1,
        messages: [{ key: d.key, value: d.value, headers: { ...d.headers, ...own } }],
      },
      { running: this.o.running, log: this.o.log, what: 'dead letter' },
    );
    this.o.log.warn(
      { reason: d.reason, target: d.target, source: own[deadLetterHeaders.source], why: d.message },
      'record sent to the dead-letter topic',
    );
  }
}
