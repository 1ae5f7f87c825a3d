import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * Where the fault proxy listens (the broker's FAULTS listener is advertised there, so clients
 * stay behind it) and where it forwards to, from the stack's settings.
 */
export function proxyAddresses(env: NodeJS.ProcessEnv = process.env) {
  const [lh, lp] = (env['SLUICE_KAFKA_PROXY'] ?? '').split(':');
  const [th, tp] = (env['SLUICE_KAFKA_FAULTS_LISTENER'] ?? '').split(':');
  if (!lh || !lp || !th || !tp)
    throw new Error('the stack has no FAULTS listener: restart it (npm run stack:down && npm run stack:up)');
  return {
    listen: { host: lh, port: Number(lp) },
    target: { host: th, port: Number(tp) },
    /** The broker address clients behind the proxy bootstrap from. */
    brokers: `${lh}:${lp}`,
  };
}

export type ProxyMode = 'pass' | 'blackhole' | 'slow';

/**
 * A TCP proxy between Sluice's processes and the broker's FAULTS listener (advertised at the
 * proxy, so clients stay behind it). It passes bytes, black-holes them (connections stay open and
 * nothing flows either way, new ones too, until the mode changes: what TCP does when a link
 * drops), slows them (each chunk held `slowMs`, in order), or resets every connection.
 */
export class FaultProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private modeNow: ProxyMode = 'pass';
  slowMs = 200;
  /** Connections accepted so far. */
  connections = 0;

  constructor(
    private readonly listen: { host: string; port: number },
    private readonly target: { host: string; port: number },
  ) {}

  /**
   * Listens on the advertised address. There is one such address, so a second proxy (another test
   * file) waits for the first to stop, up to `waitMs`.
   */
  async start(waitMs = 180_000): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const server = createServer((client) => this.accept(client));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(this.listen.port, this.listen.host, resolve);
        });
        this.server = server;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  get mode(): ProxyMode {
    return this.modeNow;
  }

  set mode(mode: ProxyMode) {
    this.modeNow = mode;
    for (const { client, upstream } of this.pairs) {
      if (mode === 'blackhole') {
        client.pause();
        upstream.pause();
      } else {
        client.resume();
        upstream.resume();
      }
    }
  }

  /** Every connection is reset (RST), as a middlebox or a restarting load balancer does. */
  resetAll(): void {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  async stop(): Promise<void> {
    this.resetAll();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private accept(client: Socket): void {
    this.connections++;
    const upstream = connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket) => {
      let chain = Promise.resolve();
      from.on('data', (chunk: Buffer) => {
        if (this.modeNow !== 'slow') {
          to.write(chunk);
          return;
        }
        chain = chain.then(() => new Promise((r) => setTimeout(r, this.slowMs))).then(() => void to.write(chunk));
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    if (this.modeNow === 'blackhole') {
      client.pause();
      upstream.pause();
    }
  }
}
