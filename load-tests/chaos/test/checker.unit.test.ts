import { describe, expect, it } from 'vitest';
import { check, checkFiles, type JobFiles, type OutputLine } from '../src/checker.js';

const lines = (ids: string[], kind: OutputLine['kind'] = 'result') => ids.map((id) => ({ id, kind }));

describe('chaos checker', () => {
  it('passes a run where every prompt ended once and each job was announced once', () => {
    const r = check({
      submitted: new Map([
        ['job_a', 3],
        ['job_b', 1],
      ]),
      outputs: [...lines(['job_a:0', 'job_a:2', 'job_b:0']), ...lines(['job_a:1'], 'error')],
      announcements: ['job_a', 'job_b'],
    });
    expect(r).toMatchObject({ submitted: 4, delivered: 4, lost: 0, duplicates: 0, unknown: 0, ok: true });
  });

  it('counts lost, duplicated, doubly-ended and unknown prompts, and announcements per job', () => {
    const r = check({
      submitted: new Map([['job_a', 4]]),
      outputs: [...lines(['job_a:0', 'job_a:0', 'job_a:1', 'job_a:9', 'job_z:0']), ...lines(['job_a:1'], 'error')],
      announcements: ['job_a', 'job_a'],
    });
    expect(r).toMatchObject({
      submitted: 4,
      delivered: 2,
      lost: 2,
      duplicates: 2,
      resultAndError: 1,
      unknown: 2,
      announcementsPerJob: { job_a: 2 },
      ok: false,
    });
    expect(r.examples.lost).toEqual(['job_a:2', 'job_a:3']);
    expect(r.examples.duplicates.sort()).toEqual(['job_a:0', 'job_a:1']);
  });

  it("fails a run with more results than the provider's ledger admitted calls", () => {
    const input = {
      submitted: new Map([['job_a', 3]]),
      outputs: [...lines(['job_a:0', 'job_a:1']), ...lines(['job_a:2'], 'error')],
      announcements: ['job_a'],
    };
    expect(check({ ...input, admittedCalls: 2 })).toMatchObject({ resultsWithoutCall: 0, ok: true });
    expect(check({ ...input, admittedCalls: 1 })).toMatchObject({ resultsWithoutCall: 1, ok: false });
  });

  it('fails a job that was never announced', () => {
    const r = check({ submitted: new Map([['job_a', 1]]), outputs: lines(['job_a:0']), announcements: [] });
    expect(r.ok).toBe(false);
    expect(r.announcementsPerJob).toEqual({ job_a: 0 });
  });

  describe('from the files alone', () => {
    const expectRow = (row: number) =>
      row === 2 ? { customId: null, inputError: 'INPUT_INVALID_JSON' } : { customId: `r${row}` };
    const line = (row: number, code?: string, customId: string | null = `r${row}`) =>
      JSON.stringify({ id: `job_a:${row}`, custom_id: customId, row_index: row, error: code ? { code } : null });
    const job = (): JobFiles => ({
      jobId: 'job_a',
      manifest: {
        counts: { total: 4, succeeded: 2, failed: 1, invalid: 1, cancelled: 0 },
        outputs: {
          results: [{ name: 'job_a/results/part-0-0-3.jsonl', records: 2 }],
          errors: [{ name: 'job_a/errors/part-0-0-3.jsonl', records: 2 }],
        },
      },
      objects: [
        'job_a/manifest.json',
        'job_a/results/part-0-0-3.jsonl',
        'job_a/errors/part-0-0-3.jsonl',
        'job_a/_index/0-0.json',
      ],
      lines: new Map([
        ['job_a/results/part-0-0-3.jsonl', [line(0), line(1)]],
        ['job_a/errors/part-0-0-3.jsonl', [line(2, 'INPUT_INVALID_JSON', null), line(3, 'ATTEMPTS_EXHAUSTED')]],
      ]),
    });

    it('finds nothing wrong in a job whose files agree with its manifest and its input', () => {
      expect(checkFiles(job(), expectRow)).toEqual([]);
    });

    it('finds a file outside the manifest, counts that disagree, a wrong custom_id and a bad row taken as good', () => {
      const j = job();
      j.objects.push('job_a/results/part-1-0-0.jsonl');
      j.manifest!.counts.succeeded = 3;
      j.lines.set('job_a/results/part-0-0-3.jsonl', [line(0), line(1, undefined, 'r7')]);
      j.lines.set('job_a/errors/part-0-0-3.jsonl', [line(2, 'PROVIDER_REJECTED', null), line(3, 'INPUT_WRONG_TYPE')]);
      const problems = checkFiles(j, expectRow);
      expect(problems).toEqual([
        'job_a: job_a/results/part-1-0-0.jsonl is not in the manifest',
        'job_a:1: custom_id r7, not r1',
        'job_a:2: a bad row, ended PROVIDER_REJECTED, not INPUT_INVALID_JSON',
        'job_a:3: a good row, ended INPUT_WRONG_TYPE',
        'job_a: the manifest counts 3 succeeded, the files hold 2 results',
      ]);
      const r = check({
        submitted: new Map([['job_a', 4]]),
        outputs: [],
        announcements: ['job_a'],
        fileProblems: problems,
      });
      expect(r.ok).toBe(false);
      expect(r.fileProblems).toBe(5);
    });
  });
});
