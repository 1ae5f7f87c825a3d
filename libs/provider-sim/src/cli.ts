import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dialects, type Dialect } from './config.js';
import { startProviderSim } from './server.js';

const usage = `usage: npm run sim -- [options]

  --port N              port to listen on (default 8787; 0 = any free port)
  --host H              address to listen on (default 127.0.0.1)
  --config FILE         JSON configuration: { seed, keys: { <apiKey>: KeyConfig }, latency, faults }
  --key SPEC            add a key: apiKey[:dialect[:rpm=N,tpm=N,rpd=N,burstWindowMs=N]] (repeatable)
  --seed N              seed of completions, latency and faults (default 1)
  --latency-ms N        base latency in ms (default 200)
  --per-token-ms N      latency per completion token in ms (default 2; with --latency-ms 0, 0 answers at once)
  --help

Examples:
  npm run sim -- --key sk-test:openai:rpm=500,tpm=200000
  npm run sim -- --key az-key:azure:rpm=300,tpm=50000 --key gem-key:gemini:rpm=15

The control API (limits, faults, ledger, stats) is described in libs/provider-sim/README.md.`;

function parseKeySpec(spec: string): [string, { dialect: Dialect; limits: Record<string, number> }] {
  const [key, dialect = 'openai', limitText = ''] = spec.split(':');
  if (!key) throw new Error(`--key ${spec}: the API key is empty`);
  if (!dialects.includes(dialect as Dialect))
    throw new Error(`--key ${spec}: dialect must be one of ${dialects.join(', ')}`);
  const limits: Record<string, number> = {};
  for (const part of limitText.split(',').filter(Boolean)) {
    const [name, value] = part.split('=');
    if (!name || !['rpm', 'tpm', 'rpd', 'burstWindowMs'].includes(name) || !Number.isFinite(Number(value))) {
      throw new Error(`--key ${spec}: "${part}" is not rpm=N, tpm=N, rpd=N or burstWindowMs=N`);
    }
    limits[name] = Number(value);
  }
  return [key, { dialect: dialect as Dialect, limits }];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8787' },
      host: { type: 'string', default: '127.0.0.1' },
      config: { type: 'string' },
      key: { type: 'string', multiple: true },
      seed: { type: 'string' },
      'latency-ms': { type: 'string' },
      'per-token-ms': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const config = (values.config ? JSON.parse(readFileSync(values.config, 'utf8')) : {}) as Record<string, unknown>;
  const keys = { ...(config['keys'] as Record<string, unknown> | undefined) };
  for (const spec of values.key ?? []) {
    const [key, keyConfig] = parseKeySpec(spec);
    keys[key] = keyConfig;
  }
  config['keys'] = keys;
  if (values.seed !== undefined) config['seed'] = Number(values.seed);
  if (values['latency-ms'] !== undefined) {
    config['latency'] = { ...(config['latency'] as object | undefined), baseMs: Number(values['latency-ms']) };
  }
  if (values['per-token-ms'] !== undefined) {
    config['latency'] = { ...(config['latency'] as object | undefined), perTokenMs: Number(values['per-token-ms']) };
  }
  const server = await startProviderSim({ config, port: Number(values.port), host: values.host });
  console.log(
    `provider simulator on ${server.url} with keys: ${Object.keys(keys).join(', ') || '(none; add with PUT /_sim/keys/<key>)'}`,
  );
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`provider-sim: ${err instanceof Error ? err.message : String(err)}`);
  console.error(usage);
  process.exit(2);
});
