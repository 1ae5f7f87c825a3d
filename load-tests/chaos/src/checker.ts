/** One line of a results or errors file, as far as the checker reads it. */
export interface OutputLine {
  id: string;
  kind: 'result' | 'error';
}

export interface CheckInput {
  /** Every prompt id submitted (jobId:rowIndex), per job. */
  submitted: Map<string, number>;
  /** Every line of every committed output file of those jobs. */
  outputs: OutputLine[];
  /** Announcements received, by job id (one entry per message). */
  announcements: string[];
}

export interface CheckResult {
  submitted: number;
  delivered: number;
  /** Submitted prompts with no line in the output. Must be 0. */
  lost: number;
  /** Lines beyond the first for a prompt id. Must be 0. */
  duplicates: number;
  /** Prompt ids with both a result and an error line. Must be 0. */
  resultAndError: number;
  /** Lines whose prompt id was never submitted. Must be 0. */
  unknown: number;
  /** Announcements received per job, as a subscriber sees them (each must be 1). */
  announcementsPerJob: Record<string, number>;
  /** Examples of each problem, for the report. */
  examples: { lost: string[]; duplicates: string[]; unknown: string[] };
  ok: boolean;
}

/**
 * The suite's judge: every submitted prompt ends in exactly one result or one error, nothing else
 * appears in the output, and every job is announced exactly once.
 */
export function check({ submitted, outputs, announcements }: CheckInput): CheckResult {
  const seen = new Map<string, { result: number; error: number }>();
  let unknown = 0;
  const unknownIds: string[] = [];
  for (const line of outputs) {
    const [jobId, row] = splitId(line.id);
    const total = submitted.get(jobId);
    if (total === undefined || !(row >= 0 && row < total)) {
      unknown++;
      if (unknownIds.length < 5) unknownIds.push(line.id);
      continue;
    }
    const s = seen.get(line.id) ?? { result: 0, error: 0 };
    s[line.kind]++;
    seen.set(line.id, s);
  }
  let duplicates = 0;
  let resultAndError = 0;
  const duplicateIds: string[] = [];
  for (const [id, s] of seen) {
    const extra = s.result + s.error - 1;
    if (extra > 0) {
      duplicates += extra;
      if (duplicateIds.length < 5) duplicateIds.push(id);
    }
    if (s.result > 0 && s.error > 0) resultAndError++;
  }
  let total = 0;
  const lostIds: string[] = [];
  for (const [jobId, n] of submitted) {
    total += n;
    for (let row = 0; row < n && lostIds.length < 5; row++)
      if (!seen.has(`${jobId}:${row}`)) lostIds.push(`${jobId}:${row}`);
  }
  const lost = total - seen.size;
  const perJob: Record<string, number> = {};
  for (const jobId of submitted.keys()) perJob[jobId] = 0;
  for (const jobId of announcements) if (jobId in perJob) perJob[jobId]!++;
  const ok =
    lost === 0 &&
    duplicates === 0 &&
    resultAndError === 0 &&
    unknown === 0 &&
    Object.values(perJob).every((n) => n === 1);
  return {
    submitted: total,
    delivered: seen.size,
    lost,
    duplicates,
    resultAndError,
    unknown,
    announcementsPerJob: perJob,
    examples: { lost: lostIds, duplicates: duplicateIds, unknown: unknownIds },
    ok,
  };
}

function splitId(id: string): [string, number] {
  const i = id.lastIndexOf(':');
  return i < 0 ? [id, -1] : [id.slice(0, i), Number(id.slice(i + 1))];
}
