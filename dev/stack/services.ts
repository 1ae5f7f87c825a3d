import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { binDir, cacheDir, dataDir, repoRoot } from './paths.js';
import { onPath, portOpen, run, startDetached, type StartedProcess } from './process.js';
import { host, pubsubProject, type StackPorts } from './settings.js';

/** One service of the local stack: how to install it (cached), start it and tell it is healthy. */
export interface Service {
  name: string;
  /** Ports the service listens on; a port taken by someone else is reported before starting. */
  ports: number[];
  /** What runs and where, for status output. */
  describe(): string;
  /** Makes the binaries available, from the cache when already there. */
  install(): void;
  start(): StartedProcess;
  healthy(): Promise<boolean>;
  /** How long a start may take before it counts as failed. */
  startTimeoutMs: number;
}

function pomProperty(pom: string, property: string): string {
  const text = readFileSync(join(repoRoot, pom), 'utf8');
  const match = new RegExp(`<${property}>([^<]+)</${property}>`).exec(text);
  if (!match?.[1]) throw new Error(`${pom} has no <${property}>`);
  return match[1];
}

/** Marks a cache entry complete, so that an interrupted download is redone rather than used. */
function cached(dir: string, fill: () => void): void {
  const done = join(dir, '.complete');
  if (existsSync(done)) return;
  mkdirSync(dir, { recursive: true });
  fill();
  writeFileSync(done, new Date().toISOString());
}

function requireTool(tool: string, why: string, hint: string): void {
  if (!onPath(tool)) throw new Error(`${tool} is not installed; it is needed ${why}. ${hint}`);
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await res.body?.cancel();
  return res.ok;
}

export function kafkaService(ports: StackPorts): Service {
  const version = pomProperty('dev/kafka/pom.xml', 'kafka.version');
  const home = join(cacheDir, `kafka-${version}`);
  const classpath = join(home, 'libs', '*');
  const dir = join(dataDir, 'kafka');
  const logDirs = join(dir, 'log');
  const config = join(dir, 'server.properties');
  const java = (args: string[]) => [
    '-Xms256m',
    '-Xmx1g',
    `-Dlog4j2.configurationFile=${join(repoRoot, 'dev/kafka/log4j2.properties')}`,
    '-cp',
    classpath,
    ...args,
  ];
  return {
    name: 'kafka',
    ports: [ports.kafka, ports.kafkaController, ports.kafkaFaults],
    startTimeoutMs: 90_000,
    describe: () => `Apache Kafka ${version} (KRaft) on ${host}:${ports.kafka}`,
    install() {
      requireTool('java', 'to run Kafka', 'Install Java 17: apt-get install openjdk-17-jre-headless');
      cached(home, () => {
        requireTool('mvn', 'to fetch Kafka from Maven Central', 'Install Maven: apt-get install maven');
        run('mvn', [
          '-q',
          '-B',
          '-f',
          join(repoRoot, 'dev/kafka/pom.xml'),
          'dependency:copy-dependencies',
          '-DincludeScope=runtime',
          `-DoutputDirectory=${join(home, 'libs')}`,
        ]);
      });
      installKafkaTools();
    },
    start() {
      mkdirSync(logDirs, { recursive: true });
      writeFileSync(config, kafkaProperties(ports, logDirs));
      if (!existsSync(join(logDirs, 'meta.properties'))) {
        // Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
        const clusterId = randomBytes(16).toString('base64url');
        // One argument with '=': an id that begins with '-' (one in 64) is otherwise read as an option.
        run('java', java(['kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId}`, '-c', config]));
      }
      return startDetached('kafka', 'java', java(['kafka.Kafka', config]));
    },
    healthy: () => kafkaReady(`${host}:${ports.kafka}`),
  };
}

/** Where Kafka's command-line tools are kept (their own classpath, apart from the broker's). */
export function kafkaToolsHome(): string {
  return join(cacheDir, `kafka-tools-${pomProperty('dev/kafka/tools/pom.xml', 'kafka.version')}`);
}

/** Fetches Kafka's command-line tools from Maven Central into the cache, once. */
export function installKafkaTools(): void {
  const home = kafkaToolsHome();
  cached(home, () => {
    requireTool('mvn', "to fetch Kafka's tools from Maven Central", 'Install Maven: apt-get install maven');
    run('mvn', [
      '-q',
      '-B',
      '-f',
      join(repoRoot, 'dev/kafka/tools/pom.xml'),
      'dependency:copy-dependencies',
      '-DincludeScope=runtime',
      `-DoutputDirectory=${join(home, 'libs')}`,
    ]);
  });
}

function kafkaProperties(ports: StackPorts, logDirs: string): string {
  return `# Written by dev/stack on every start; edit dev/stack/services.ts instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@${host}:${ports.kafkaController}
listeners=PLAINTEXT://${host}:${ports.kafka},CONTROLLER://${host}:${ports.kafkaController},FAULTS://${host}:${ports.kafkaFaults}
# FAULTS is advertised at the fault suite's proxy, so its clients stay behind the proxy.
advertised.listeners=PLAINTEXT://${host}:${ports.kafka},FAULTS://${host}:${ports.kafkaProxy}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,FAULTS:PLAINTEXT
log.dirs=${logDirs}
# Sluice creates its own topics.
auto.create.topics.enable=false
# One node: every internal topic has a single replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One node: fencing the only broker helps nothing, and a shared machine (CI beside a fault-suite
# run) can starve the controller for seconds; the default 9 s fenced it, and every client then
# met NOT_LEADER and NOT_COORDINATOR for minutes.
broker.session.timeout.ms=30000
# Tests create groups constantly; do not wait for more members to join.
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
`;
}

/** The broker is ready when it answers a metadata request and lists its topics. */
async function kafkaReady(broker: string): Promise<boolean> {
  const { Kafka, logLevel } = await import('kafkajs');
  const admin = new Kafka({
    clientId: 'sluice-stack-health',
    brokers: [broker],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    requestTimeout: 2_000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return true;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export function redisService(ports: StackPorts): Service {
  const dir = join(dataDir, 'redis');
  return {
    name: 'redis',
    ports: [ports.redis],
    startTimeoutMs: 20_000,
    describe: () => `Redis on ${host}:${ports.redis}`,
    install() {
      if (onPath('redis-server')) return;
      if (process.getuid?.() === 0 && onPath('apt-get')) {
        run('apt-get', ['update', '-qq']);
        run('apt-get', ['install', '-y', '-qq', 'redis-server'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
        return;
      }
      throw new Error('redis-server is not installed. Install it: sudo apt-get install redis-server');
    },
    start() {
      mkdirSync(dir, { recursive: true });
      return startDetached('redis', 'redis-server', [
        '--bind',
        host,
        '--port',
        String(ports.redis),
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ]);
    },
    healthy: () => redisPing(ports.redis),
  };
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    let reply = '';
    socket.setTimeout(1_000, () => socket.destroy());
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) {
        socket.end();
        resolve(reply.startsWith('+PONG'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

export function gcsService(ports: StackPorts): Service {
  const version = 'v1.56.1';
  const dir = join(binDir, `fake-gcs-server-${version}`);
  const binary = join(dir, 'fake-gcs-server');
  const root = join(dataDir, 'gcs');
  const url = `http://${host}:${ports.gcs}`;
  return {
    name: 'gcs',
    ports: [ports.gcs],
    startTimeoutMs: 20_000,
    describe: () => `GCS JSON API (fake-gcs-server ${version}) on ${url}`,
    install() {
      cached(dir, () => {
        requireTool('go', 'to build the GCS emulator', 'Install Go 1.26 or newer.');
        run('go', ['install', `github.com/fsouza/fake-gcs-server@${version}`], { env: { GOBIN: dir } });
      });
    },
    start() {
      mkdirSync(root, { recursive: true });
      return startDetached('gcs', binary, [
        '-scheme',
        'http',
        '-host',
        host,
        '-port',
        String(ports.gcs),
        '-backend',
        'filesystem',
        '-filesystem-root',
        root,
        '-public-host',
        `${host}:${ports.gcs}`,
        '-external-url',
        url,
        '-log-level',
        'warn',
      ]);
    },
    healthy: () => httpOk(`${url}/storage/v1/b?project=${pubsubProject}`),
  };
}

/** Where gcloud installed Google's Pub/Sub emulator, if it did. */
function gcloudPubsubEmulatorJar(): string | undefined {
  const roots = [
    process.env['CLOUDSDK_ROOT_DIR'],
    '/usr/lib/google-cloud-sdk',
    '/usr/share/google-cloud-sdk',
    '/opt/google-cloud-sdk',
  ];
  for (const root of roots) {
    if (!root) continue;
    const lib = join(root, 'platform', 'pubsub-emulator', 'lib');
    if (!existsSync(lib)) continue;
    const jar = readdirJars(lib).find((f) => f.startsWith('cloud-pubsub-emulator'));
    if (jar) return join(lib, jar);
  }
  return undefined;
}

function readdirJars(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.jar'));
  } catch {
    return [];
  }
}

export function pubsubService(ports: StackPorts): Service {
  const forced = process.env['SLUICE_PUBSUB_IMPL'];
  const jar = forced === 'pstest' ? undefined : gcloudPubsubEmulatorJar();
  if (forced === 'gcloud' && !jar) {
    throw new Error('SLUICE_PUBSUB_IMPL=gcloud but the gcloud Pub/Sub emulator is not installed');
  }
  const build = goBinary('dev/pubsub-pstest', 'pubsub-pstest');
  return {
    name: 'pubsub',
    ports: [ports.pubsub],
    startTimeoutMs: 30_000,
    describe: () =>
      `Pub/Sub ${jar ? "emulator (gcloud's)" : 'emulator (pstest fallback)'} on ${host}:${ports.pubsub}, project ${pubsubProject}`,
    install() {
      if (jar) {
        requireTool('java', "to run gcloud's Pub/Sub emulator", 'Install Java 17.');
        return;
      }
      buildGo(build, 'to build the pstest Pub/Sub server');
    },
    start() {
      if (jar) {
        return startDetached('pubsub', 'java', ['-Xmx512m', '-jar', jar, `--host=${host}`, `--port=${ports.pubsub}`]);
      }
      return startDetached('pubsub', build.binary, ['-port', String(ports.pubsub)]);
    },
    // Both serve gRPC; the smoke tests prove the API. Here an open port means it is up.
    healthy: () => portOpen(host, ports.pubsub),
  };
}

/** A Go binary built from a folder of dev/, cached under a digest of its sources. */
function goBinary(folder: string, name: string): { dir: string; binary: string; source: string } {
  const source = join(repoRoot, folder);
  const digest = createHash('sha256')
    .update(['main.go', 'go.mod', 'go.sum'].map((f) => readFileSync(join(source, f), 'utf8')).join('\0'))
    .digest('hex')
    .slice(0, 12);
  const dir = join(binDir, `${name}-${digest}`);
  return { dir, source, binary: join(dir, name) };
}

function buildGo(build: { dir: string; binary: string; source: string }, why: string): void {
  cached(build.dir, () => {
    requireTool('go', why, 'Install Go 1.26 or newer.');
    run('go', ['build', '-o', build.binary, '.'], { cwd: build.source });
  });
}

export function schemaRegistryService(ports: StackPorts): Service {
  const build = goBinary('dev/schema-registry', 'schema-registry');
  const prefix = '/apis/ccompat/v7';
  const url = `http://${host}:${ports.schemaRegistry}${prefix}`;
  const dir = join(dataDir, 'schema-registry');
  return {
    name: 'schema-registry',
    ports: [ports.schemaRegistry],
    startTimeoutMs: 20_000,
    describe: () => `Schema registry (Confluent REST API, Avro, journal in ${dir}) on ${url}`,
    install: () => buildGo(build, 'to build the schema registry'),
    start: () => {
      // Its schemas live as long as Kafka's data: records kept across a restart of the stack name
      // their schemas by id, and an in-memory registry gave those ids to other schemas (the sink
      // then read every old job event as undecodable).
      mkdirSync(dir, { recursive: true });
      return startDetached('schema-registry', build.binary, [
        '-listen',
        `${host}:${ports.schemaRegistry}`,
        '-prefix',
        prefix,
        '-compatibility',
        'BACKWARD',
        '-data',
        join(dir, 'journal.jsonl'),
      ]);
    },
    healthy: () => httpOk(`${url}/subjects`),
  };
}

/**
 * The services of the stack, in start order. SLUICE_STACK_SERVICES (a comma-separated list of
 * names) runs only some of them.
 */
export function stackServices(ports: StackPorts, only = process.env['SLUICE_STACK_SERVICES']): Service[] {
  const all: Array<[string, () => Service]> = [
    ['kafka', () => kafkaService(ports)],
    ['redis', () => redisService(ports)],
    ['gcs', () => gcsService(ports)],
    ['pubsub', () => pubsubService(ports)],
    ['schema-registry', () => schemaRegistryService(ports)],
  ];
  if (!only) return all.map(([, make]) => make());
  const wanted = only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((w) => !all.some(([name]) => name === w));
  if (unknown.length > 0) {
    throw new Error(
      `SLUICE_STACK_SERVICES names unknown services: ${unknown.join(', ')}; known: ${all.map(([n]) => n).join(', ')}`,
    );
  }
  return all.filter(([name]) => wanted.includes(name)).map(([, make]) => make());
}
