import type { LiveCountsWriter } from '@sluice/job-store';
import {
  DeadLetters,
  GatheringSender,
  promptHeaders,
  resultsTopic,
  tierFor,
  TopicMissingError,
  type DeadLetter,
  type Logger,
  type Producer,
  type SluiceKafka,
} from '@sluice/kafka';
import type { PromptOutcome, PromptRequest, SchemaCodecs } from '@sluice/schemas';
import type { Task } from './types.js';

export interface OutcomeWriterOptions {
  kafka: SluiceKafka;
  producer: Producer;
  codecs: SchemaCodecs;
  /** The lane topic the prompts were read from. */
  lane: string;
  live: LiveCountsWriter;
  log: Logger;
  /** False once the dispatcher stops: writes then give up instead of retrying. */
  running: () => boolean;
}

/**
 * Where a prompt's reading ends: its one terminal outcome on its job's results topic, a delay
 * topic for another attempt, or a dead letter. Outcomes and delayed prompts are gathered into a
 * produce request per couple of milliseconds, each written until it is.
 */
export class OutcomeWriter {
  private readonly outcomes: GatheringSender;
  private readonly delayed: GatheringSender;
  private readonly deadLetters: DeadLetters;

  constructor(private readonly o: OutcomeWriterOptions) {
    const { producer, running, log } = o;
    // A results topic that is gone (an unknown job, deleted after retention) refuses its outcomes,
    // which become dead letters, instead of holding every outcome gathered with them.
    this.outcomes = new GatheringSender(producer, {
      running,
      log,
      what: 'outcome',
      topicExists: (topic) => o.kafka.topicExists(topic, { fresh: true }),
    });
    this.delayed = new GatheringSender(producer, { running, log, what: 'delayed prompt' });
    this.deadLetters = new DeadLetters(producer, { stage: 'dispatcher', running, log });
  }

  /** A lane record's dead letter, its source the record's place in the lane. */
  deadLetter(task: Pick<Task, 'partition' | 'offset'>, letter: Omit<DeadLetter, 'source'>): Promise<void> {
    return this.deadLetters.send({
      ...letter,
      source: { topic: this.o.lane, partition: task.partition, offset: task.offset },
    });
  }

  /** The prompt's one terminal outcome; kept as a dead letter when its results topic is gone. */
  async terminal(
    task: Task,
    status: 'succeeded' | 'failed' | 'cancelled',
    result: PromptOutcome['result'],
    error: PromptOutcome['error'] = null,
  ): Promise<void> {
    const r = task.request;
    const outcome: PromptOutcome = {
      jobId: r.jobId,
      promptId: r.promptId,
      rowIndex: r.rowIndex,
      tenant: r.tenant,
      customId: r.customId,
      status,
      result,
      error,
      attempts: task.history.length,
      attemptHistory: task.history,
      completedAt: Date.now(),
    };
    const topic = resultsTopic(r.jobId);
    const message = { key: r.jobId, value: this.o.codecs.promptOutcome.encodeSync(outcome) };
    try {
      await this.outcomes.send(topic, message);
    } catch (err) {
      if (!(err instanceof TopicMissingError)) throw err;
      // Its job's results topic is gone: the outcome (already paid for) is kept as a dead letter.
      await this.deadLetter(task, {
        reason: 'TOPIC_MISSING',
        message: `${topic} does not exist (an unknown job, or its topic was deleted)`,
        target: topic,
        ...message,
      });
    }
  }

  /** Sends the prompt to the delay tier of `waitMs`, from which it comes back to its lane partition. */
  async delay(task: Task, attempt: number, waitMs: number): Promise<void> {
    const next: PromptRequest = { ...task.request, attempt };
    await this.delayed.send(tierFor(waitMs), {
      key: task.request.jobId,
      value: this.o.codecs.promptRequest.encodeSync(next),
      headers: {
        [promptHeaders.dueAt]: String(Date.now() + waitMs),
        [promptHeaders.lane]: this.o.lane,
        [promptHeaders.lanePartition]: String(task.partition),
        [promptHeaders.attempts]: JSON.stringify(task.history),
      },
    });
    this.o.live.delayed(task.request.jobId);
  }
}
