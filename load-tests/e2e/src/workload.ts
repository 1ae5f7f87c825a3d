/**
 * A backfill as users run them: prompts of documents, filings and transcripts, most of 1-4 KB,
 * some of tens of KB, a few near the 1 MiB line limit, each asking for 50 to 2,000 tokens. Rows
 * are generated as a stream (never held in memory) from a seed, so that a run can be repeated.
 */
import { Readable } from 'node:stream';

export interface WorkloadShape {
  /** Median prompt size in bytes. @default 1500 */
  medianBytes: number;
  /** 99th percentile of prompt sizes in bytes. @default 16384 */
  p99Bytes: number;
  /** Rows near the line limit in this stream (spread evenly). */
  hugeRows: number;
  /** Bytes of each of those rows' prompt: under the ingest API's 1 MiB line with its JSON. */
  hugeBytes: number;
  /** Tokens asked for: log-uniform between these. @default [50, 2000] */
  maxTokens: [number, number];
}

export const defaultShape: WorkloadShape = {
  medianBytes: 1_500,
  p99Bytes: 16_384,
  hugeRows: 0,
  hugeBytes: 1_000_000,
  maxTokens: [50, 2_000],
};

/** Short prompts (about 90 bytes) asking for short answers: the memory curve's 10M rows. */
export const shortShape: WorkloadShape = {
  medianBytes: 40,
  p99Bytes: 80,
  hugeRows: 0,
  hugeBytes: 0,
  maxTokens: [5, 20],
};

/** A seeded generator (mulberry32). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const vocabulary = (
  'the company reported revenue for the quarter ended with net income of million compared to ' +
  'prior year period operating margin increased guidance remains unchanged board approved ' +
  'dividend per share risk factors include competition regulation supply chain interest rates ' +
  'customer said that the order arrived late and the support team resolved the issue within ' +
  'two days transcript speaker analyst question about growth in the cloud segment and capital ' +
  'expenditure plans for next fiscal year management expects demand to stay strong across regions'
).split(' ');

/** 256 KB of text to cut prompts from: slices at random offsets differ from row to row. */
function corpus(seed: number): string {
  const r = random(seed);
  const words: string[] = [];
  let n = 0;
  while (n < 256 * 1024) {
    const w = vocabulary[Math.floor(r() * vocabulary.length)]!;
    words.push(w);
    n += w.length + 1;
  }
  return words.join(' ');
}

/** A standard normal draw (Box-Muller). */
function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export interface RowStats {
  rows: number;
  bytes: number;
  largestPromptBytes: number;
  promptBytes: number[];
}

/**
 * JSONL rows `{custom_id, prompt, max_tokens}` of `job`: prompt sizes log-normal with the shape's
 * median and 99th percentile (at least 10 bytes, at most 256 KB), `hugeRows` of `hugeBytes`
 * spread evenly, max_tokens log-uniform in 50..2,000. `stats` is filled as rows are read.
 */
export function rows(job: number, n: number, shape: WorkloadShape, stats: RowStats): Readable {
  const r = random(1_000 + job);
  const text = corpus(job + 1);
  const sigma = Math.log(shape.p99Bytes / shape.medianBytes) / 2.326;
  const hugeEvery = shape.hugeRows > 0 ? Math.floor(n / (shape.hugeRows + 1)) : Infinity;
  const cut = (bytes: number) => {
    let out = '';
    while (out.length < bytes) {
      const from = Math.floor(r() * (text.length - 1));
      out += text.slice(from, from + Math.min(bytes - out.length, text.length - from));
    }
    return out;
  };
  let i = 0;
  return new Readable({
    read() {
      let chunk = '';
      while (chunk.length < 256 * 1024 && i < n) {
        const huge = i > 0 && i % hugeEvery === 0 && i / hugeEvery <= shape.hugeRows;
        const size = huge
          ? shape.hugeBytes
          : Math.round(Math.min(256 * 1024, Math.max(10, shape.medianBytes * Math.exp(sigma * normal(r)))));
        const [lo, hi] = shape.maxTokens;
        const maxTokens = Math.round(lo * Math.exp(Math.log(hi / lo) * r()));
        const prompt = `Document ${job}-${i}. Summarize in one paragraph: ${cut(size)}`;
        const line = `${JSON.stringify({ custom_id: `d${i}`, prompt, max_tokens: maxTokens })}\n`;
        stats.rows++;
        stats.bytes += line.length;
        stats.largestPromptBytes = Math.max(stats.largestPromptBytes, prompt.length);
        if (stats.promptBytes.length < 100_000) stats.promptBytes.push(prompt.length);
        chunk += line;
        i++;
      }
      this.push(chunk.length > 0 ? chunk : null);
    },
  });
}

/** The q-quantile of a list (sorted here). */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
