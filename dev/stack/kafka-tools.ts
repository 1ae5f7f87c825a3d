// npm run kafka -- TOOL [ARGS]: Kafka's own command-line tools against the local stack.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnvFile } from '@sluice/testing';
import { envFile, repoRoot } from './paths.js';
import { installKafkaTools, kafkaToolsHome } from './services.js';

/** The tools, by the name of their kafka-*.sh script, and the class each runs. */
export const kafkaTools = {
  'consumer-groups': 'org.apache.kafka.tools.consumer.group.ConsumerGroupCommand',
  topics: 'org.apache.kafka.tools.TopicCommand',
  'get-offsets': 'org.apache.kafka.tools.GetOffsetShell',
  transactions: 'org.apache.kafka.tools.TransactionsCommand',
  'console-consumer': 'org.apache.kafka.tools.consumer.ConsoleConsumer',
  'console-producer': 'org.apache.kafka.tools.ConsoleProducer',
} as const;
export type KafkaToolName = keyof typeof kafkaTools;

const usage = `usage: npm run kafka -- TOOL [ARGS]
  Kafka's command-line tools (from Maven Central, cached) against the local stack's broker;
  --bootstrap-server is added unless given. TOOL is one of:
    ${Object.keys(kafkaTools).join(', ')}
  for example:
    npm run kafka -- consumer-groups --describe --all-groups
    npm run kafka -- topics --list
    npm run kafka -- get-offsets --topic sluice.requests.openai
  TOOL --help prints the tool's own options.`;

/** The local stack's broker (.sluice/stack.env, or SLUICE_KAFKA_BROKERS). */
function stackBroker(): string {
  const fromEnv = process.env['SLUICE_KAFKA_BROKERS'];
  if (fromEnv) return fromEnv;
  if (!existsSync(envFile)) throw new Error(`no ${envFile}: start the stack with npm run stack:up`);
  const broker = parseEnvFile(readFileSync(envFile, 'utf8'))['SLUICE_KAFKA_BROKERS'];
  if (!broker) throw new Error(`${envFile} names no SLUICE_KAFKA_BROKERS: start the stack with npm run stack:up`);
  return broker;
}

/** Runs one of Kafka's tools against `broker` (the local stack's by default); resolves with what it printed. */
export function runKafkaTool(
  tool: KafkaToolName,
  args: string[],
  o: { broker?: string; stdio?: 'pipe' | 'inherit' } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  installKafkaTools();
  const bootstrap =
    args.includes('--bootstrap-server') || args.includes('--help')
      ? []
      : ['--bootstrap-server', o.broker ?? stackBroker()];
  const child = spawn(
    'java',
    [
      '-Xmx256m',
      `-Dlog4j2.configurationFile=${join(repoRoot, 'dev/kafka/tools/log4j2.properties')}`,
      '-cp',
      join(kafkaToolsHome(), 'libs', '*'),
      kafkaTools[tool],
      ...bootstrap,
      ...args,
    ],
    { stdio: o.stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function main(): Promise<void> {
  const [tool, ...args] = process.argv.slice(2);
  if (!tool || tool === '--help' || tool === '-h') {
    console.log(usage);
    process.exit(tool ? 0 : 2);
  }
  if (!(tool in kafkaTools)) {
    console.error(`kafka: no tool "${tool}"\n${usage}`);
    process.exit(2);
  }
  const { code } = await runKafkaTool(tool as KafkaToolName, args, { stdio: 'inherit' });
  process.exit(code);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(`kafka: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
