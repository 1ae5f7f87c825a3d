import type { Message } from '@sluice/kafka';
import type { ProviderAdapter } from '@sluice/providers';
import type { Attempt, PromptRequest } from '@sluice/schemas';
import type { OffsetTracker } from './offset-tracker.js';

/** One API key of a pool: how to call with it, and its name in buckets and logs. */
export interface PoolKey {
  keyId: string;
  adapter: ProviderAdapter;
}

/** A key of the pool as the dispatcher keeps it. */
export interface KeyState extends PoolKey {
  /** Until when the key is quota-blocked (0: not). */
  parkedUntil: number;
}

/** A prompt read from the lane, from its reading to its outcome. */
export interface Task {
  request: PromptRequest;
  /** The lane record as read: what a dead letter keeps. */
  record: Pick<Message, 'key' | 'value' | 'headers'>;
  history: Attempt[];
  partition: number;
  offset: number;
  tracker: OffsetTracker;
}
