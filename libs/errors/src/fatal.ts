/**
 * The last word of a process whose error escaped every handler (a rejected promise nobody awaited,
 * a throw in a timer): it is logged as one structured line, so the cause is in the log search
 * rather than only in the container's stderr, and the process exits 1 for its supervisor to
 * restart it. Its state is unknown past such an error, and every role is safe to restart: offsets
 * and parts are committed only after their work is written.
 */
export function exitOnUnhandledErrors(log: { fatal(obj: object, msg: string): void }): void {
  const die = (kind: string) => (err: unknown) => {
    log.fatal({ err }, `${kind}: exiting so that the process is restarted`);
    process.exit(1);
  };
  process.on('unhandledRejection', die('unhandled promise rejection'));
  process.on('uncaughtException', die('uncaught exception'));
}
