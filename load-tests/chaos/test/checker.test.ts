import { describe, expect, it } from 'vitest';
import { check, type OutputLine } from '../src/checker.js';

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

  it('fails a job that was never announced', () => {
    const r = check({ submitted: new Map([['job_a', 1]]), outputs: lines(['job_a:0']), announcements: [] });
    expect(r.ok).toBe(false);
    expect(r.announcementsPerJob).toEqual({ job_a: 0 });
  });
});
