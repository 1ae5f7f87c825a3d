/**
 * Ports and hosts of the local stack. Every port can be moved with an environment variable, so
 * two checkouts (or another program on the default port) need not collide.
 */
export interface StackPorts {
  /** @default 29092 (SLUICE_KAFKA_PORT) */
  kafka: number;
  /** @default 29093 (SLUICE_KAFKA_CONTROLLER_PORT) */
  kafkaController: number;
  /**
   * A second broker listener, advertised at `kafkaProxy`: clients that bootstrap through a TCP
   * proxy on that port keep going through it (the fault suite's network faults).
   * @default 29094 (SLUICE_KAFKA_FAULTS_PORT)
   */
  kafkaFaults: number;
  /** Where the fault suite's proxy listens; nothing listens there otherwise. @default 29095 (SLUICE_KAFKA_PROXY_PORT) */
  kafkaProxy: number;
  /** @default 26379 (SLUICE_REDIS_PORT) */
  redis: number;
  /** @default 24443 (SLUICE_GCS_PORT) */
  gcs: number;
  /** @default 28085 (SLUICE_PUBSUB_PORT) */
  pubsub: number;
  /** @default 28081 (SLUICE_SCHEMA_REGISTRY_PORT) */
  schemaRegistry: number;
}

export const host = '127.0.0.1';

/** The GCP project the Pub/Sub emulator and GCS emulator are addressed with. */
export const pubsubProject = process.env['SLUICE_PUBSUB_PROJECT'] ?? 'sluice-local';

function port(variable: string, fallback: number): number {
  const raw = process.env[variable];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65_535) {
    throw new Error(`${variable}=${raw} is not a TCP port: give a whole number from 1 to 65535`);
  }
  return value;
}

export function stackPorts(): StackPorts {
  return Object.freeze({
    kafka: port('SLUICE_KAFKA_PORT', 29092),
    kafkaController: port('SLUICE_KAFKA_CONTROLLER_PORT', 29093),
    kafkaFaults: port('SLUICE_KAFKA_FAULTS_PORT', 29094),
    kafkaProxy: port('SLUICE_KAFKA_PROXY_PORT', 29095),
    redis: port('SLUICE_REDIS_PORT', 26379),
    gcs: port('SLUICE_GCS_PORT', 24443),
    pubsub: port('SLUICE_PUBSUB_PORT', 28085),
    schemaRegistry: port('SLUICE_SCHEMA_REGISTRY_PORT', 28081),
  });
}

/** The connection settings written to .sluice/stack.env, by variable name. */
export function connectionSettings(ports: StackPorts): Record<string, string> {
  return {
    SLUICE_KAFKA_BROKERS: `${host}:${ports.kafka}`,
    // The fault suite's proxy forwards from the second address to the first.
    SLUICE_KAFKA_FAULTS_LISTENER: `${host}:${ports.kafkaFaults}`,
    SLUICE_KAFKA_PROXY: `${host}:${ports.kafkaProxy}`,
    SLUICE_REDIS_URL: `redis://${host}:${ports.redis}`,
    SLUICE_GCS_ENDPOINT: `http://${host}:${ports.gcs}`,
    // Read by @google-cloud/pubsub itself.
    PUBSUB_EMULATOR_HOST: `${host}:${ports.pubsub}`,
    SLUICE_PUBSUB_PROJECT: pubsubProject,
    SLUICE_SCHEMA_REGISTRY_URL: `http://${host}:${ports.schemaRegistry}/apis/ccompat/v7`,
    // The emulators take no credentials: google-auth is told not to look for the GCE metadata
    // server (off GCE it warns "MetadataLookupWarning ... ENOTFOUND" and waits for the lookup).
    METADATA_SERVER_DETECTION: 'none',
  };
}
