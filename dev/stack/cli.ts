import { envFile } from './paths.js';
import { stackDown, stackStatus, stackUp } from './stack.js';

const usage = `usage: npm run stack:up | stack:down | stack:status   (tsx dev/stack/cli.ts up|down|status)
  up      install (cached) and start every service of the local stack not already running
  down    stop the processes stack:up started, by their pid files, and nothing else
  status  one line per service: running, unhealthy or stopped (exit 3 unless all run)
  SLUICE_STACK_SERVICES=redis,gcs runs only some; settings go to ${envFile}`;

async function main(command: string | undefined): Promise<number> {
  // Asked for help, nothing is started or stopped.
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log(usage);
    return 0;
  }
  switch (command) {
    case 'up': {
      const started = Date.now();
      await stackUp();
      console.log(`stack is up in ${((Date.now() - started) / 1000).toFixed(1)} s; settings in ${envFile}`);
      console.log('stop it with: npm run stack:down');
      return 0;
    }
    case 'down':
      await stackDown();
      console.log('stack is down');
      return 0;
    case 'status': {
      const reports = await stackStatus();
      for (const r of reports) {
        console.log(
          `${r.name.padEnd(16)} ${r.state.padEnd(10)} ${r.pid === undefined ? '' : `pid ${r.pid}  `}${r.description}`,
        );
      }
      return reports.every((r) => r.state === 'running') ? 0 : 3;
    }
    default:
      console.error(usage);
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`stack: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
