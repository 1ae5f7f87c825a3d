import { createServer } from 'node:net';

/**
 * A TCP port free on 127.0.0.1 now, drawn at random from [from, to). Tests that start servers
 * draw from ranges of their own, below the kernel's ephemeral ports (32768 and up), so that
 * neither a parallel test nor a client socket takes the port before the server binds it.
 */
export async function freePort(from: number, to: number): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = from + Math.floor(Math.random() * (to - from));
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port in [${from}, ${to}) after 100 tries`);
}
