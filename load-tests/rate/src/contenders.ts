import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { redisKeys } from '@sluice/job-store';
import { laneTopic, promptId, resultsTopic, type SluiceKafka } from '@sluice/kafka';
import type { PromptRequest, SchemaCodecs } from '@sluice/schemas';
import { parseEnvFile, stackSettings, type StackSettings } from '@sluice/testing';

export interface BenchPrompt {
  model: string;
  messages: Array<{ role: 'user'; content: string }>;
  max_tokens: number;
}

export interface Launch {
  /** The contender's processes; CPU is read from /proc for each. */
  procs: ChildProcess[];
  stop(): Promise<void>;
}

export interface LaunchContext {
  root: string;
  simUrl: string;
  apiKey: string;
  dialect: 'openai' | 'azure' | 'gemini' | 'compatible';
  prompts: BenchPrompt[];
  /** The true limits, for the contenders that are told them. */
  told: { rpm: number; tpm: number };
  replicas: number;
  workdir: string;
}

/**
 * The local stack's settings (from `.sluice/stack.env` unless the environment names a broker), and
 * the variables a dispatcher process needs to reach it.
 */
export function localStack(root: string): { settings: StackSettings; env: Record<string, string> } {
  const envFile = join(root, '.sluice', 'stack.env');
  if (!process.env['SLUICE_KAFKA_BROKERS'] && existsSync(envFile))
    Object.assign(process.env, parseEnvFile(readFileSync(envFile, 'utf8')));
  const settings = stackSettings();
  return {
    settings,
    env: {
      SLUICE_KAFKA_BROKERS: settings.kafkaBrokers.join(','),
      SLUICE_REDIS_URL: settings.redisUrl,
      SLUICE_SCHEMA_REGISTRY_URL: settings.schemaRegistryUrl,
    },
  };
}

/** CPU seconds (user + system) a process has used, from /proc; undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
  } catch {
    return undefined;
  }
}

function stopAll(procs: ChildProcess[]): Promise<void> {
  // A profiled process writes its profile when it exits of itself: it gets SIGTERM and 15 s.
  const profiling = process.env['BENCH_DISPATCHER_PROFILE'] !== undefined;
  return Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          const force = setTimeout(() => p.kill('SIGKILL'), profiling ? 15_000 : 0);
          p.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          if (profiling) p.kill('SIGTERM');
        }),
    ),
  ).then(() => undefined);
}

/** The cookbook script speaks OpenAI's API, and Azure's when the URL names a deployment. */
function chatUrl(c: LaunchContext, model: string): string {
  return c.dialect === 'azure'
    ? `${c.simUrl}/openai/deployments/${model}/chat/completions?api-version=2024-10-21`
    : `${c.simUrl}/v1/chat/completions`;
}

/** The naive client: paces at the RPM it is told, retries every failure at once. */
export function launchNaive(c: LaunchContext): Launch {
  const file = join(c.workdir, 'naive-prompts.jsonl');
  writeFileSync(file, c.prompts.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const p = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(c.root, 'load-tests/rate/src/naive.ts'),
      c.simUrl,
      c.apiKey,
      String(c.told.rpm),
      file,
      c.dialect,
    ],
    { cwd: c.root, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { procs: [p], stop: () => stopAll([p]) };
}

/**
 * An HTTPS front for the simulator, with a self-signed certificate made by openssl (cached): the
 * cookbook script accepts only https:// request URLs. Python trusts it through SSL_CERT_FILE.
 */
export async function startTlsFront(
  target: string,
): Promise<{ url: string; certFile: string; close(): Promise<void> }> {
  const dir = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sluice', 'bench-tls');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  if (!existsSync(certFile)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '365',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
  }
  const to = new URL(target);
  const server = createHttpsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
    const up = httpRequest(
      { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    certFile,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * openai-cookbook's api_request_parallel_processor.py, run unmodified from a copy the user gives
 * (`--cookbook FILE`: its code is not part of Sluice), told the true limits. Its tokenizer's
 * encoding file cannot be downloaded here, so `peer/tiktoken.py` (ceil(chars / 4) tokens, the
 * simulator's own count) stands in for tiktoken; aiohttp comes from PyPI into a cached venv.
 */
export function launchCookbook(c: LaunchContext, script: string, tls: { url: string; certFile: string }): Launch {
  const venv = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sluice', 'bench-venv');
  const python = join(venv, 'bin', 'python');
  if (!existsSync(python)) {
    mkdirSync(venv, { recursive: true });
    execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  }
  try {
    execFileSync(python, ['-c', 'import aiohttp'], { stdio: 'ignore' });
  } catch {
    execFileSync(python, ['-m', 'pip', 'install', '-q', 'aiohttp==3.10.10'], { stdio: 'inherit' });
  }
  const file = join(c.workdir, 'cookbook-requests.jsonl');
  writeFileSync(file, c.prompts.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const p = spawn(
    python,
    [
      script,
      '--requests_filepath',
      file,
      '--save_filepath',
      join(c.workdir, 'cookbook-results.jsonl'),
      '--request_url',
      chatUrl({ ...c, simUrl: tls.url }, c.prompts[0]!.model),
      '--api_key',
      c.apiKey,
      '--max_requests_per_minute',
      String(c.told.rpm),
      '--max_tokens_per_minute',
      String(c.told.tpm),
      '--token_encoding_name',
      'cl100k_base',
      '--max_attempts',
      '5',
      '--logging_level',
      '40',
    ],
    {
      cwd: c.workdir,
      env: { ...process.env, PYTHONPATH: join(c.root, 'load-tests/rate/peer'), SSL_CERT_FILE: tls.certFile },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  return { procs: [p], stop: () => stopAll([p]) };
}

/**
 * Sluice's dispatcher (its own main.ts, as deployed), `replicas` of them in one group on the key,
 * told no limits: it learns them from the provider. The prompts are put on a lane of its own first.
 */
export async function launchSluice(
  c: LaunchContext,
  deps: { kafka: SluiceKafka; codecs: SchemaCodecs; stackEnv: Record<string, string>; id: string },
): Promise<Launch> {
  const lane = `bench${deps.id}`;
  const jobId = `job_bench${deps.id}`;
  await deps.kafka.ensureTopics([
    { topic: laneTopic(lane), partitions: 12 },
    { topic: resultsTopic(jobId), partitions: 1 },
  ]);
  // The job's view, as the API writes it: the dispatcher checks each lane record against it.
  const redis = new Redis(deps.stackEnv['SLUICE_REDIS_URL']!);
  await redis.set(
    redisKeys.job(jobId),
    JSON.stringify({ jobId, status: 'sealed', tenant: 'bench', model: c.prompts[0]?.model, total: c.prompts.length }),
  );
  redis.disconnect();
  const producer = deps.kafka.producer();
  await producer.connect();
  const messages = c.prompts.map((p, i) => {
    const request: PromptRequest = {
      jobId,
      promptId: promptId(jobId, i),
      rowIndex: i,
      tenant: 'bench',
      provider: c.dialect,
      model: p.model,
      messages: p.messages,
      parameters: {
        temperature: 0,
        topP: null,
        maxTokens: p.max_tokens,
        responseFormat: null,
        stop: null,
        seed: null,
        extra: null,
      },
      attempt: 0,
      customId: null,
      priority: 0,
      submittedAt: Date.now(),
      source: 'kafka',
    };
    return { key: `${i}`, partition: i % 12, value: deps.codecs.promptRequest.encodeSync(request) };
  });
  for (let i = 0; i < messages.length; i += 1_000)
    await producer.send({ topic: laneTopic(lane), messages: messages.slice(i, i + 1_000) });
  await producer.disconnect();
  const baseUrl = c.dialect === 'openai' || c.dialect === 'compatible' ? `${c.simUrl}/v1` : c.simUrl;
  // BENCH_DISPATCHER_PROFILE=DIR writes each dispatcher's CPU profile there (.cpuprofile).
  const profileDir = process.env['BENCH_DISPATCHER_PROFILE'];
  const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const procs = Array.from({ length: c.replicas }, () =>
    spawn(process.execPath, [...profile, '--import', 'tsx', join(c.root, 'stream-processors/dispatcher/src/main.ts')], {
      cwd: c.root,
      env: {
        ...process.env,
        ...deps.stackEnv,
        SLUICE_PROVIDER: c.dialect,
        SLUICE_LANE: lane,
        // The prompts name several models: the lane serves any.
        SLUICE_MODELS: JSON.stringify({ [lane]: ['*'] }),
        SLUICE_PROVIDER_API_KEY: c.apiKey,
        SLUICE_PROVIDER_KEY_ID: c.apiKey,
        SLUICE_PROVIDER_BASE_URL: baseUrl,
        // BENCH_DISPATCHER_LOG=FILE keeps the dispatchers' info log (their pace, as it changes).
        LOG_LEVEL: process.env['BENCH_DISPATCHER_LOG'] ? 'info' : 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const logTo = process.env['BENCH_DISPATCHER_LOG'];
  for (const p of procs) {
    if (logTo) p.stdout?.pipe(createWriteStream(logTo, { flags: 'a' }));
    else p.stdout?.resume();
  }
  return { procs, stop: () => stopAll(procs) };
}
