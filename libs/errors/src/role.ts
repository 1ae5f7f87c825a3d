import { exitOnUnhandledErrors } from './fatal.js';

/** A role started: what stops it (calls in flight finish, parts are left for the next run, ...). */
export interface RunningRole {
  stop(): Promise<void>;
}

interface RoleLog {
  info(obj: object, msg: string): void;
  fatal(obj: object, msg: string): void;
}

/** Whether the module at `url` is the script node was started with (a role's main.ts run as such). */
export function isMainModule(url: string): boolean {
  return url === `file://${process.argv[1]}`;
}

/**
 * A role's process, the same for every role: `start` builds and starts it (logging with `log`);
 * the first SIGTERM or SIGINT stops it and exits 0; a start that fails prints `<role>: <message>`
 * (a bad setting says which and how to fix it) and exits 1; an error no handler caught is logged
 * and exits 1, for the supervisor to restart it (exitOnUnhandledErrors).
 */
export function runRole(role: string, log: RoleLog, start: () => Promise<RunningRole>): void {
  exitOnUnhandledErrors(log);
  // A role lives until it is told to stop. Without this, a role whose only handles are gone (a
  // kafkajs consumer that crashed without restarting, its producer's connections reset, the
  // watchdog's timer unref'd) left an empty event loop, and node exited 0 without a word: the
  // delay processor did so in the fault suite, and its prompts waited in the delay topics.
  const keepAlive = setInterval(() => undefined, 3_600_000);
  start().then(
    (running) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, `${role} stopping`);
        clearInterval(keepAlive);
        running.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            log.fatal({ err }, `${role} did not stop cleanly`);
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    },
    (err: unknown) => {
      console.error(`${role}: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
