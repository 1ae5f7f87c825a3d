import type { Consumer } from 'kafkajs';
import type { Logger } from './types.js';

export interface ConsumerWatchOptions {
  /** No fetch ended, and no batch is being handled, for this long: the consumer is hung. */
  stallMs: number;
  /** Called once per stall with what was seen last; the caller replaces the consumer. */
  onStall: (stall: { idleMs: number; lastEvent: string }) => void;
  /**
   * With a batch in hand, no event for this long is a hang all the same. Roles whose handlers may
   * wait long (the sink waits out an object store) keep the default. @default stallMs * 10
   */
  batchStallMs?: number;
  /** How often to look. @default min(5 s, stallMs / 4) */
  checkMs?: number;
}

/**
 * Watches a running kafkajs consumer for the hang kafkajs 2.2.4 can fall into after its broker
 * connections are reset (tulios/kafkajs#1163, #659): its fetches time out one after another, it
 * crashes, restarts, and goes on timing out, never reading again. A healthy consumer ends a fetch
 * at least every `maxWaitTimeInMs` (paused partitions included: it waits that long and returns
 * nothing), or is inside a batch handler. A fetch begun is no sign of life (kafkajs begins the same
 * fetch again after each timeout), nor a heartbeat, nor a crash. Returns a function that stops
 * watching.
 */
export function watchConsumer(consumer: Consumer, o: ConsumerWatchOptions): () => void {
  let last = Date.now();
  let lastEvent = 'started';
  let inBatch = 0;
  const seen = (name: string) => () => {
    last = Date.now();
    lastEvent = name;
  };
  const { FETCH_START, FETCH, START_BATCH_PROCESS, END_BATCH_PROCESS, GROUP_JOIN, CRASH } = consumer.events;
  const removers = [
    consumer.on(FETCH_START, () => void (lastEvent = 'fetch started')),
    consumer.on(FETCH, seen('fetch ended')),
    consumer.on(GROUP_JOIN, seen('group joined')),
    consumer.on(START_BATCH_PROCESS, () => {
      inBatch++;
      seen('batch started')();
    }),
    consumer.on(END_BATCH_PROCESS, () => {
      inBatch = Math.max(0, inBatch - 1);
      seen('batch ended')();
    }),
    // A crash abandons the batches in hand (no END_BATCH_PROCESS follows); kafkajs then restarts
    // the consumer, or does not, which is the hang this watches for.
    consumer.on(CRASH, () => {
      inBatch = 0;
      lastEvent = 'crashed';
    }),
  ];
  const timer = setInterval(
    () => {
      const idleMs = Date.now() - last;
      // A batch in hand may legitimately take long, up to batchStallMs.
      if (idleMs < o.stallMs || (inBatch > 0 && idleMs < (o.batchStallMs ?? o.stallMs * 10))) return;
      last = Date.now(); // one call per stall period
      o.onStall({ idleMs, lastEvent });
    },
    o.checkMs ?? Math.min(5_000, o.stallMs / 4),
  );
  timer.unref();
  return () => {
    clearInterval(timer);
    for (const remove of removers) remove();
  };
}

/**
 * Leaves a hung consumer and starts its replacement. The hung one's disconnect may hang as its
 * fetches do: it gets 5 s, then it is left. `start` is retried with backoff while `running()`.
 */
export async function replaceHungConsumer(
  hung: Consumer,
  o: { start: () => Promise<void>; running: () => boolean; log: Logger; what: string; context?: object },
): Promise<void> {
  void Promise.race([hung.disconnect(), new Promise((r) => setTimeout(r, 5_000))]).catch(() => undefined);
  for (let attempt = 1; o.running(); attempt++) {
    try {
      return await o.start();
    } catch (err) {
      o.log.warn({ ...o.context, err, attempt }, `${o.what} could not start; retrying`);
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
    }
  }
}

export interface SuperviseOptions {
  /**
   * Makes, connects and runs one consumer. `current()` is false once this consumer has been
   * replaced (or retired): its late batches and events must then be dropped.
   */
  start: (current: () => boolean) => Promise<Consumer>;
  /** See ConsumerWatchOptions. */
  stallMs: number;
  batchStallMs?: number;
  /** False once the role stops: no replacement is started then. */
  running: () => boolean;
  log: Logger;
  /** Names the consumer in logs ("lane consumer"). */
  what: string;
  /** Fields for every log line about it (lane, jobId). */
  context?: object;
  /** Told each time a hung consumer is replaced. */
  onReplaced?: () => void;
}

/**
 * One role's consumer under the watchdog: started by `start`, and when it hangs (kafkajs after
 * connection resets) left for a new one, which reads on from the committed offsets or wherever
 * `start` seeks. A generation count tells the current consumer from the ones replaced.
 */
export class ConsumerSupervisor {
  private generation = 0;
  private unwatch: (() => void) | undefined;
  /** Hung consumers replaced so far. */
  replacements = 0;

  constructor(private readonly o: SuperviseOptions) {}

  /** Starts a consumer (the first, or a replacement) and watches it. */
  async start(): Promise<Consumer> {
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    const consumer = await this.o.start(current);
    this.unwatch?.();
    this.unwatch = watchConsumer(consumer, {
      stallMs: this.o.stallMs,
      batchStallMs: this.o.batchStallMs,
      onStall: ({ idleMs, lastEvent }) => {
        if (!this.o.running() || !current()) return;
        this.replacements++;
        this.o.log.warn(
          { ...this.o.context, idleMs, lastEvent, replacements: this.replacements },
          `${this.o.what} hung (no fetch); replacing it`,
        );
        this.o.onReplaced?.();
        void replaceHungConsumer(consumer, {
          start: async () => void (await this.start()),
          running: this.o.running,
          log: this.o.log,
          what: this.o.what,
          context: this.o.context,
        });
      },
    });
    return consumer;
  }

  /** No consumer is current any more (the role leaves its group): late events are dropped. */
  retire(): void {
    this.generation++;
    this.stop();
  }

  /** Stops watching. */
  stop(): void {
    this.unwatch?.();
    this.unwatch = undefined;
  }
}
