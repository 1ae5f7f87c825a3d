import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { envFile, logDir, stateDir } from './paths.js';
import { forgetPid, isAlive, portOpen, runningPid, stopPid, waitUntil } from './process.js';
import { stackServices, type Service } from './services.js';
import { connectionSettings, host, stackPorts } from './settings.js';

export type ServiceState = 'running' | 'started' | 'stopped' | 'unhealthy';

export interface ServiceReport {
  name: string;
  state: ServiceState;
  pid?: number;
  description: string;
}

type Log = (line: string) => void;

/**
 * Installs (from the cache when warm) and starts every service that is not already running,
 * waits for each to be healthy, and writes the connection settings to .sluice/stack.env.
 * Running it again finds the running services and starts nothing.
 */
export async function stackUp(log: Log = console.log): Promise<ServiceReport[]> {
  const ports = stackPorts();
  const services = stackServices(ports);
  mkdirSync(stateDir, { recursive: true });
  const reports: ServiceReport[] = [];
  // Install everything first: a missing tool fails fast, before anything is left half-started.
  for (const service of services) {
    if (runningPid(service.name) === undefined) service.install();
  }
  for (const service of services) reports.push(await up(service, log));
  writeEnvFile(connectionSettings(ports));
  log(`settings written to ${envFile}`);
  return reports;
}

async function up(service: Service, log: Log): Promise<ServiceReport> {
  const description = service.describe();
  const existing = runningPid(service.name);
  if (existing !== undefined) {
    if (await service.healthy().catch(() => false)) {
      log(`${service.name}: already running (pid ${existing}) — ${description}`);
      return { name: service.name, state: 'running', pid: existing, description };
    }
    log(`${service.name}: pid ${existing} is not healthy; waiting for it`);
    await waitUntil(service.name, () => service.healthy(), service.startTimeoutMs);
    return { name: service.name, state: 'running', pid: existing, description };
  }
  forgetPid(service.name);
  for (const port of service.ports) {
    if (await portOpen(host, port)) {
      throw new Error(
        `${service.name}: port ${port} is already in use by a process that dev/stack did not start. ` +
          `Stop it, or move Sluice's port with the SLUICE_*_PORT variables (see README.md).`,
      );
    }
  }
  const started = Date.now();
  const { pid, logFile } = service.start();
  try {
    await waitUntil(
      service.name,
      () => service.healthy(),
      service.startTimeoutMs,
      // Just spawned: its command line may not show the exec yet, so only ask whether it lives.
      () => isAlive(pid),
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}. Its log, ${logFile}, ends:\n${tail(logFile, 15)}`);
  }
  log(`${service.name}: started (pid ${pid}) in ${((Date.now() - started) / 1000).toFixed(1)} s — ${description}`);
  return { name: service.name, state: 'started', pid, description };
}

/** Stops the services that stackUp started (by their pid files), last started first. */
export async function stackDown(log: Log = console.log): Promise<void> {
  const services = stackServices(stackPorts()).reverse();
  for (const service of services) {
    const pid = runningPid(service.name);
    if (pid === undefined) {
      forgetPid(service.name);
      continue;
    }
    const how = await stopPid(pid);
    forgetPid(service.name);
    log(`${service.name}: ${how} (pid ${pid})`);
  }
}

export async function stackStatus(): Promise<ServiceReport[]> {
  const services = stackServices(stackPorts());
  return Promise.all(
    services.map(async (service): Promise<ServiceReport> => {
      const pid = runningPid(service.name);
      const description = service.describe();
      if (pid === undefined) return { name: service.name, state: 'stopped', description };
      const healthy = await service.healthy().catch(() => false);
      return { name: service.name, state: healthy ? 'running' : 'unhealthy', pid, description };
    }),
  );
}

function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

function writeEnvFile(settings: Record<string, string>): void {
  const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
  writeFileSync(envFile, `# Written by npm run stack:up. Logs: ${logDir}\n${lines.join('\n')}\n`);
}
