// Generated from schemas/avro/*.avsc by `npm run schemas:generate`. Do not edit.

export interface Job {
  jobId: string;
  tenant: string;
  /** open | sealed | cancelled | completed | completed_with_errors | failed */
  status: string;
  provider: string;
  model: string;
  priority: number;
  /** http | kafka */
  source: string;
  /** JSON text of the job's default parameters. */
  parameters: string;
  promptTemplate: null | string;
  metadata: Record<string, string>;
  /** JSON text: { pubsubTopic?, webhookUrl? }. */
  notifications: string;
  idempotencyKey: null | string;
  laneTopic: string;
  partitions: Array<number>;
  resultsTopic: string;
  /** Prompts on the lane topic (committed). */
  accepted: number;
  /** Input rows that became error outcomes. */
  invalid: number;
  /** Set when the job is sealed: accepted + invalid. */
  total: null | number;
  createdAt: number;
  updatedAt: number;
  /** When the sink accounted for every prompt, wrote the manifest and announced the job (ms since the epoch). */
  finalizedAt: null | number;
  /** The job's manifest.json, once finalized. */
  manifestUri: null | string;
  /** SHA-256 (hex) of the rows committed so far, as read: an upload that resumes after them must start with the same rows. */
  inputDigest: null | string;
  /** Why the job has its status, when Sluice set it (a job left open past its time is cancelled as expired). */
  statusReason: null | string;
}

/** A job lifecycle event on the compacted topic sluice.jobs (key: job id). Each event carries the whole job, so the latest one is the job's state. */
export interface JobEvent {
  /** created | input_progress | sealed | cancelled | completed | completed_with_errors | failed | finalized */
  type: string;
  at: number;
  job: Job;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface PromptResult {
  model: string;
  text: string;
  finishReason: null | string;
  usage: Usage;
  latencyMs: number;
  /** The provider's response body (JSON text). */
  body: null | string;
}

export interface PromptError {
  /** A code from docs/errors.md. */
  code: string;
  message: string;
  /** 1-based line (or element) of the input, for input errors. */
  lineNumber: null | number;
}

export interface Attempt {
  attempt: number;
  at: number;
  /** ok | rate_limited | server_error | timeout | error */
  outcome: string;
  code: null | string;
  message: null | string;
  latencyMs: null | number;
}

/** The one terminal record of a prompt, on its job's topic sluice.results.<jobId>: a result or an explicit error. */
export interface PromptOutcome {
  jobId: string;
  promptId: string;
  rowIndex: number;
  tenant: string;
  customId: null | string;
  /** succeeded | failed | cancelled */
  status: string;
  result: null | PromptResult;
  error: null | PromptError;
  attempts: number;
  attemptHistory: Array<Attempt>;
  completedAt: number;
}

export interface Message {
  /** system | user | assistant */
  role: string;
  content: string;
}

export interface Parameters {
  temperature: null | number;
  topP: null | number;
  maxTokens: null | number;
  /** JSON text of the response_format object. */
  responseFormat: null | string;
  stop: null | Array<string>;
  seed: null | number;
  /** JSON text of other provider parameters, passed through. */
  extra: null | string;
}

/** One prompt of a job, on its provider's lane topic sluice.requests.<provider>. Key: the job id. */
export interface PromptRequest {
  jobId: string;
  /** <jobId>:<rowIndex>; unique across the platform. */
  promptId: string;
  /** 0-based position of the prompt in the job's input. */
  rowIndex: number;
  tenant: string;
  /** openai | azure | gemini | compatible */
  provider: string;
  model: string;
  messages: Array<Message>;
  parameters: Parameters;
  /** Provider calls made so far. */
  attempt: number;
  customId: null | string;
  priority: number;
  submittedAt: number;
  /** http | kafka */
  source: string;
}
