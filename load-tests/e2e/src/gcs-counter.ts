import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GcsRequests {
  /** Object writes (uploads). */
  writes: number;
  /** Object reads (downloads, metadata). */
  reads: number;
  /** Listings (each page one request). */
  lists: number;
  deletes: number;
  total: number;
}

/**
 * A pass-through HTTP proxy in front of the GCS emulator that counts the requests the roles make,
 * by kind: what the pipeline would pay GCS for (operations are billed per request). Loopback only.
 */
export class GcsCounter {
  readonly counts: GcsRequests = { writes: 0, reads: 0, lists: 0, deletes: 0, total: 0 };
  private server: Server | undefined;

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    const to = new URL(this.target);
    this.server = createServer((req, res) => {
      this.count(req.method ?? 'GET', req.url ?? '/');
      const out = request(
        { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      out.on('error', () => res.destroy());
      req.pipe(out);
    });
    this.server.keepAliveTimeout = 30_000;
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The counts now, to take differences of. */
  snapshot(): GcsRequests {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((ok) => this.server?.close(ok) ?? ok(undefined));
  }

  private count(method: string, url: string): void {
    const path = url.split('?')[0]!;
    this.counts.total++;
    if (method === 'POST' || method === 'PUT') this.counts.writes++;
    else if (method === 'DELETE') this.counts.deletes++;
    else if (/\/b\/[^/]+\/o\/?$/.test(path)) this.counts.lists++;
    else this.counts.reads++;
  }
}

/** Differences of two snapshots. */
export function minus(a: GcsRequests, b: GcsRequests): GcsRequests {
  return {
    writes: a.writes - b.writes,
    reads: a.reads - b.reads,
    lists: a.lists - b.lists,
    deletes: a.deletes - b.deletes,
    total: a.total - b.total,
  };
}
