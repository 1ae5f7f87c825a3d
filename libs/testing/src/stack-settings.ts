/** Connection settings of the real local services that integration tests run against. */
export interface StackSettings {
  kafkaBrokers: string[];
  redisUrl: string;
  gcsEndpoint: string;
  pubsubEmulatorHost: string;
  pubsubProject: string;
  schemaRegistryUrl: string;
}

const howToStart =
  'Start the local stack with `npm run stack:up` (npm test starts it by itself through its globalSetup), ' +
  'or export the SLUICE_* settings of a stack you run yourself.';

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set, so the tests cannot reach the local stack. ${howToStart}`);
  }
  return value;
}

/**
 * Reads the stack's settings from the environment (npm test's globalSetup loads them from
 * .sluice/stack.env). A missing setting is an error that says how to start the stack: a test that
 * needs a service never passes, or skips, without it.
 */
export function stackSettings(env: NodeJS.ProcessEnv = process.env): StackSettings {
  return Object.freeze({
    kafkaBrokers: required(env, 'SLUICE_KAFKA_BROKERS').split(','),
    redisUrl: required(env, 'SLUICE_REDIS_URL'),
    gcsEndpoint: required(env, 'SLUICE_GCS_ENDPOINT'),
    pubsubEmulatorHost: required(env, 'PUBSUB_EMULATOR_HOST'),
    pubsubProject: required(env, 'SLUICE_PUBSUB_PROJECT'),
    schemaRegistryUrl: required(env, 'SLUICE_SCHEMA_REGISTRY_URL'),
  });
}

/** Parses a KEY=value env file; blank lines and # comments are ignored. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) continue;
    out[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
  }
  return out;
}

/** The stack's connection settings as the environment every role reads them from. */
export function connectionEnv(s: StackSettings): Record<string, string> {
  return {
    SLUICE_KAFKA_BROKERS: s.kafkaBrokers.join(','),
    SLUICE_REDIS_URL: s.redisUrl,
    SLUICE_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
    SLUICE_GCS_ENDPOINT: s.gcsEndpoint,
    PUBSUB_EMULATOR_HOST: s.pubsubEmulatorHost,
    SLUICE_PUBSUB_PROJECT: s.pubsubProject,
  };
}
