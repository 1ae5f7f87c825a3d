/** The limits of one bucket: per minute, as providers state them. Absent: unlimited. */
export interface BucketLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  /** How much rate a bucket holds before it refuses. @default 1000 (one second of rate) */
  burstWindowMs?: number;
}

/**
 * What a replica learned of a bucket's limits, shared through Redis so that the other replicas,
 * and the next process after a restart, begin from it instead of from nothing: limits the
 * provider stated (in an answer's headers, or only in a 429's body), or the rate probing settled
 * at after a 429 where nothing states them. Per minute.
 */
export interface LearnedLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  by: 'headers' | 'body' | 'probing';
}
