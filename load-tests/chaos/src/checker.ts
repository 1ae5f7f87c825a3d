import { promptId } from '@sluice/kafka';

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
  /** Problems checkFiles found in the jobs' files. Must be none. */
  fileProblems?: string[];
  /**
   * Calls the provider admitted (answered, not refused or failed) for these jobs, from the
   * simulator's ledger: a result line without one is a result the provider never gave.
   */
  admittedCalls?: number;
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
  /** Problems in the files themselves (checkFiles). Must be 0. */
  fileProblems: number;
  /** Result lines beyond the calls the provider admitted (the simulator's ledger). Must be 0. */
  resultsWithoutCall: number;
  /** Examples of each problem, for the report. */
  examples: { lost: string[]; duplicates: string[]; unknown: string[]; files: string[] };
  ok: boolean;
}

/**
 * The suite's judge: every submitted prompt ends in exactly one result or one error, nothing else
 * appears in the output, and every job is announced exactly once.
 */
export function check({
  submitted,
  outputs,
  announcements,
  fileProblems = [],
  admittedCalls = Infinity,
}: CheckInput): CheckResult {
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
      if (!seen.has(promptId(jobId, row))) lostIds.push(promptId(jobId, row));
  }
  const lost = total - seen.size;
  const perJob: Record<string, number> = {};
  for (const jobId of submitted.keys()) perJob[jobId] = 0;
  for (const jobId of announcements) if (jobId in perJob) perJob[jobId]!++;
  const results = outputs.filter((l) => l.kind === 'result').length;
  const resultsWithoutCall = Math.max(0, results - admittedCalls);
  const ok =
    resultsWithoutCall === 0 &&
    lost === 0 &&
    duplicates === 0 &&
    resultAndError === 0 &&
    unknown === 0 &&
    fileProblems.length === 0 &&
    Object.values(perJob).every((n) => n === 1);
  return {
    submitted: total,
    delivered: seen.size,
    lost,
    duplicates,
    resultAndError,
    unknown,
    announcementsPerJob: perJob,
    fileProblems: fileProblems.length,
    resultsWithoutCall,
    examples: { lost: lostIds, duplicates: duplicateIds, unknown: unknownIds, files: fileProblems.slice(0, 5) },
    ok,
  };
}

function splitId(id: string): [string, number] {
  const i = id.lastIndexOf(':');
  return i < 0 ? [id, -1] : [id.slice(0, i), Number(id.slice(i + 1))];
}

/** One job's output as the bucket holds it, for the file-level checks. */
export interface JobFiles {
  jobId: string;
  /** manifest.json, parsed; undefined when there is none. */
  manifest:
    | {
        counts: { total: number; succeeded: number; failed: number; invalid: number; cancelled: number };
        outputs: {
          results: Array<{ name: string; records: number }>;
          errors: Array<{ name: string; records: number }>;
        };
      }
    | undefined;
  /** Every object name under the job's prefix. */
  objects: string[];
  /** The lines of each file the manifest lists, by file name. */
  lines: Map<string, string[]>;
}

/** What the submitted input says of a row: its custom_id, and whether it is a bad row. */
export interface RowExpectation {
  customId: string | null;
  /** The error code a bad row must end with; undefined for a good row (a result, or a provider error). */
  inputError?: string;
}

/**
 * Checks a job from its files alone: the manifest lists every results and errors file and only
 * those, its counts equal the lines of its files, each file holds the records the manifest says,
 * and each line is its row's: id and row_index agree, custom_id is the row's, a bad row ends in
 * its input error and a good one never in an input error. Each problem is one string.
 */
export function checkFiles(job: JobFiles, expect: (row: number) => RowExpectation): string[] {
  const problems: string[] = [];
  const m = job.manifest;
  if (!m) return [`${job.jobId}: no manifest.json`];
  const listed = new Set([...m.outputs.results, ...m.outputs.errors].map((f) => f.name));
  for (const name of job.objects)
    if ((name.includes('/results/') || name.includes('/errors/')) && !listed.has(name))
      problems.push(`${job.jobId}: ${name} is not in the manifest`);
  const count = { results: 0, errors: 0 };
  for (const kind of ['results', 'errors'] as const) {
    for (const f of m.outputs[kind]) {
      const lines = job.lines.get(f.name);
      if (!lines) {
        problems.push(`${job.jobId}: ${f.name} is in the manifest but not in the bucket`);
        continue;
      }
      if (lines.length !== f.records)
        problems.push(`${job.jobId}: ${f.name} has ${lines.length} lines, the manifest says ${f.records}`);
      count[kind] += lines.length;
      for (const text of lines) {
        const l = JSON.parse(text) as {
          id: string;
          custom_id: string | null;
          row_index: number;
          error: { code: string } | null;
        };
        const [, row] = splitId(l.id);
        if (l.row_index !== row) problems.push(`${l.id}: row_index ${l.row_index}`);
        const want = expect(row);
        if (l.custom_id !== want.customId) problems.push(`${l.id}: custom_id ${l.custom_id}, not ${want.customId}`);
        if (want.inputError && l.error?.code !== want.inputError)
          problems.push(`${l.id}: a bad row, ended ${l.error?.code ?? 'as a result'}, not ${want.inputError}`);
        if (!want.inputError && l.error?.code.startsWith('INPUT_'))
          problems.push(`${l.id}: a good row, ended ${l.error.code}`);
      }
    }
  }
  const c = m.counts;
  if (c.succeeded !== count.results)
    problems.push(
      `${job.jobId}: the manifest counts ${c.succeeded} succeeded, the files hold ${count.results} results`,
    );
  if (c.failed + c.invalid + c.cancelled !== count.errors)
    problems.push(
      `${job.jobId}: the manifest counts ${c.failed + c.invalid + c.cancelled} failed, invalid and cancelled, ` +
        `the files hold ${count.errors} errors`,
    );
  if (c.total !== count.results + count.errors)
    problems.push(
      `${job.jobId}: the manifest counts ${c.total} in all, the files hold ${count.results + count.errors}`,
    );
  return problems;
}
