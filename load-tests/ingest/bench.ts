/**
 * Ingest throughput and memory: uploads N generated JSONL rows (streamed, never held in memory)
 * to the real ingest API process and measures, from the first byte sent to the answer that comes
 * after the last Kafka transaction commits, rows/s and MB/s, and the API process's peak RSS.
 *
 *   npm run bench:ingest -- [--rows 1000000[,5000000]] [--prompt-bytes N] [--no-custom-ids] [--json FILE]
 *
 * Rows carry a custom_id unless --no-custom-ids (duplicate detection keeps a hash per custom_id).
 * Prompts are a headline of about 90 bytes, or N bytes of text with --prompt-bytes (2048: a
 * document of the size a real backfill sends).
 *
 * Needs the local stack (npm run stack:up). Each size runs in a fresh API process.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hashApiKey } from '../../ingest-api/src/config.js';
import { parseEnvFile } from '../../libs/testing/src/index.js';
import { helpIfAsked } from '@sluice/testing';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
helpIfAsked(import.meta.url);
const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    json: { type: 'string', default: join(root, 'load-tests/results/ingest.json') },
    'chunk-rows': { type: 'string', default: '5000' },
    'no-custom-ids': { type: 'boolean', default: false },
    'prompt-bytes': { type: 'string' },
  },
});
const promptBytes = values['prompt-bytes'] === undefined ? undefined : Number(values['prompt-bytes']);
if (promptBytes !== undefined && !(Number.isInteger(promptBytes) && promptBytes >= 32))
  throw new Error(`--prompt-bytes ${values['prompt-bytes']}: give a whole number of bytes, at least 32`);
/** Text of about `promptBytes`, different per row (a number first), from a fixed body of words. */
const body =
  promptBytes === undefined
    ? ''
    : 'the quarterly filing notes revenue growth in services while hardware margins narrowed; '
        .repeat(Math.ceil(promptBytes / 80))
        .slice(0, promptBytes - 24);

const stack = { ...parseEnvFile(readFileSync(join(root, '.sluice/stack.env'), 'utf8')), ...process.env };

function rowsStream(n: number): Readable {
  let i = 0;
  return new Readable({
    read() {
      let chunk = '';
      for (let k = 0; k < (promptBytes === undefined ? 2_000 : 100) && i < n; k++, i++) {
        const id = values['no-custom-ids'] ? '' : `"custom_id":"row-${i}",`;
        chunk +=
          promptBytes === undefined
            ? `{${id}"prompt":"Classify the sentiment of headline number ${i}: shares of the company rose after the quarterly report."}\n`
            : `{${id}"prompt":"Summarize document ${i}: ${body}"}\n`;
      }
      this.push(chunk.length > 0 ? chunk : null);
    },
  });
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 a second)
}

function peakRssMb(pid: number): number {
  const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function runOnce(rows: number) {
  const port = 21_000 + Math.floor(Math.random() * 9_000);
  const provider = `bench${randomBytes(3).toString('hex')}`;
  const key = `sk-bench-${randomBytes(8).toString('hex')}`;
  const profile = process.env['SLUICE_BENCH_CPU_PROF'];
  const child = spawn(
    process.execPath,
    [
      ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []),
      '--import',
      'tsx',
      join(root, 'ingest-api/src/main.ts'),
    ],
    {
      env: {
        ...stack,
        SLUICE_API_KEYS: `bench:${hashApiKey(key)}`,
        SLUICE_MODELS: JSON.stringify({ [provider]: ['model-a'] }),
        SLUICE_INGEST_PORT: String(port),
        SLUICE_UPLOAD_CHUNK_ROWS: values['chunk-rows'],
        SLUICE_LANE_PARTITIONS: '12',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok) break;
      if (i > 300) throw new Error('the API did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const job = (await (
      await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ provider, model: 'model-a', parallelism: 4 }),
      })
    ).json()) as { id: string };
    const rssBefore = peakRssMb(child.pid!);
    const cpuBefore = cpuSeconds(child.pid!);
    let bytes = 0;
    const started = performance.now();
    const answer = await new Promise<{ status: number; body: string }>((ok, fail) => {
      const req = request(
        `${base}/v1/jobs/${job.id}/input`,
        { method: 'PUT', headers: { ...headers, 'content-type': 'application/jsonl' } },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', fail);
      const src = rowsStream(rows);
      src.on('data', (d: Buffer | string) => (bytes += Buffer.byteLength(d)));
      src.pipe(req);
    });
    const seconds = (performance.now() - started) / 1_000;
    const apiCpuSeconds = cpuSeconds(child.pid!) - cpuBefore;
    if (answer.status !== 200) throw new Error(`upload failed: ${answer.status} ${answer.body}`);
    const summary = JSON.parse(answer.body) as { accepted: number; total: number };
    if (summary.total !== rows) throw new Error(`expected ${rows} rows, the API counted ${summary.total}`);
    return {
      rows,
      seconds: Number(seconds.toFixed(2)),
      rowsPerSecond: Math.round(rows / seconds),
      megabytesPerSecond: Number((bytes / 1024 / 1024 / seconds).toFixed(1)),
      uploadMegabytes: Number((bytes / 1024 / 1024).toFixed(1)),
      apiCpuSeconds: Number(apiCpuSeconds.toFixed(2)),
      megabytesPerCpuSecond: Number((bytes / 1024 / 1024 / apiCpuSeconds).toFixed(1)),
      apiPeakRssMb: peakRssMb(child.pid!),
      apiRssAtStartMb: rssBefore,
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

async function main() {
  const sizes = values.rows.split(',').map(Number);
  const results = [];
  for (const rows of sizes) {
    const r = await runOnce(rows);
    results.push(r);
    console.log(
      `${String(r.rows).padStart(9)} rows  ${r.seconds} s  ${r.rowsPerSecond} rows/s  ${r.megabytesPerSecond} MB/s  ` +
        `API CPU ${r.apiCpuSeconds} s (${r.megabytesPerCpuSecond} MB per CPU s)  ` +
        `API peak RSS ${r.apiPeakRssMb} MB (at start ${r.apiRssAtStartMb} MB)`,
    );
  }
  mkdirSync(dirname(values.json), { recursive: true });
  writeFileSync(
    values.json,
    `${JSON.stringify({ benchmark: 'ingest', date: new Date().toISOString(), chunkRows: Number(values['chunk-rows']), customIds: !values['no-custom-ids'], promptBytes: promptBytes ?? null, results }, null, 2)}\n`,
  );
  console.log(`written ${values.json}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
