import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseKeyConfig, parseLimits, parseSimConfig, SimConfigError, type SimConfig } from './config.js';
import { parseChat, parseGemini, type Reply } from './dialects.js';
import { ProviderSim, type Action, type IncomingRequest } from './sim.js';

export interface ProviderSimServerOptions {
  /** A configuration object, validated like the control API's input. @default no keys */
  config?: unknown;
  /** @default 0 (any free port) */
  port?: number;
  /** @default 127.0.0.1 */
  host?: string;
  /** Largest request body accepted. @default 8 MiB */
  maxBodyBytes?: number;
  /** Injected clock (ms), for tests. */
  now?: () => number;
  /** false: the ledger keeps counts per key, no row a request. @default true */
  ledgerRows?: boolean;
}

export interface ProviderSimServer {
  sim: ProviderSim;
  /** Base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  port: number;
  close(): Promise<void>;
}

const azurePath = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/;
const geminiPath = /^\/v1beta\/models\/([^/:]+):generateContent$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new HttpError(413, `request body larger than ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Sends a reply; its headers object is fresh per request, so it is completed in place. */
function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed) return;
  reply.headers['content-length'] = String(Buffer.byteLength(reply.body));
  res.writeHead(reply.status, reply.headers);
  res.end(reply.body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

interface LightUrl {
  pathname: string;
  searchParams: URLSearchParams;
}

const noQuery = new URLSearchParams();

/** The path and query of a request; cheaper than new URL() on the hot path. */
function parseUrl(raw: string): LightUrl {
  const q = raw.indexOf('?');
  if (q < 0) return { pathname: raw, searchParams: noQuery };
  return { pathname: raw.slice(0, q), searchParams: new URLSearchParams(raw.slice(q + 1)) };
}

function apiKeyOf(req: IncomingMessage, url: LightUrl): string | undefined {
  const auth = req.headers['authorization'];
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  const header = req.headers['api-key'] ?? req.headers['x-goog-api-key'];
  if (typeof header === 'string') return header;
  return url.searchParams.get('key') ?? undefined;
}

/**
 * Starts the provider simulator's HTTP server: the provider APIs (OpenAI, Azure OpenAI, Gemini,
 * OpenAI-compatible) and the control API under /_sim.
 */
export async function startProviderSim(options: ProviderSimServerOptions = {}): Promise<ProviderSimServer> {
  const sim = new ProviderSim({
    config: parseSimConfig(options.config ?? {}),
    now: options.now,
    ledgerRows: options.ledgerRows,
  });
  const maxBody = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const hanging = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const later = (ms: number, fn: () => void) => {
    if (ms <= 0) return fn();
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const perform = (res: ServerResponse, action: Action, apiKey: string | undefined) => {
    switch (action.type) {
      case 'hang':
        hanging.add(res);
        res.on('close', () => {
          hanging.delete(res);
          sim.finished(apiKey);
        });
        return;
      case 'reset':
        later(action.delayMs, () => {
          sim.finished(apiKey);
          res.socket?.destroy();
        });
        return;
      case 'reply':
        later(action.delayMs, () => {
          sim.finished(apiKey);
          if (action.malformed) {
            return send(res, {
              ...action.reply,
              body: action.reply.body.slice(0, Math.floor(action.reply.body.length / 2)) + '<!-- upstream',
            });
          }
          if (action.slow) return sendSlowly(res, action.reply, later);
          send(res, action.reply);
        });
    }
  };

  const handleProvider = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: LightUrl,
    route: IncomingRequest['route'],
    pathModel?: string,
  ) => {
    const apiKey = apiKeyOf(req, url);
    const raw = await readBody(req, maxBody);
    let body: unknown;
    let parsed: IncomingRequest['parsed'];
    try {
      body = JSON.parse(raw);
      parsed = route === 'gemini' ? parseGemini(body, pathModel ?? '') : parseChat(body, pathModel);
    } catch {
      parsed =
        route === 'gemini' ? 'Invalid JSON payload received.' : 'We could not parse the JSON body of your request.';
    }
    // handle() sees the requests already in flight; this one counts from here until it ends.
    const action = sim.handle({
      route,
      apiKey,
      parsed,
      pathModel,
      apiVersion: url.searchParams.get('api-version') ?? undefined,
    });
    sim.started(apiKey);
    perform(res, action, apiKey);
  };

  const handleControl = async (req: IncomingMessage, res: ServerResponse, url: LightUrl) => {
    const path = url.pathname.slice('/_sim'.length);
    const method = req.method ?? 'GET';
    const body = async (): Promise<unknown> => {
      const raw = await readBody(req, maxBody);
      if (raw.trim() === '') throw new HttpError(400, 'request body is empty: send a JSON object');
      try {
        return JSON.parse(raw);
      } catch (err) {
        throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
      }
    };
    const keyMatch = /^\/keys\/([^/]+)(\/limits)?$/.exec(path);
    if (path === '/health' && method === 'GET')
      return sendJson(res, 200, { ok: true, elapsedMs: Math.round(sim.elapsed()) });
    if (path === '/config' && method === 'GET') return sendJson(res, 200, sim.currentConfig);
    if (path === '/config' && method === 'PUT') {
      sim.reset(parseSimConfig(await body()));
      return sendJson(res, 200, sim.currentConfig);
    }
    if (path === '/reset' && method === 'POST') {
      sim.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (path === '/ledger' && method === 'GET') {
      const since = Number(url.searchParams.get('since') ?? 0);
      if (!Number.isInteger(since) || since < 0)
        throw new HttpError(400, `since must be a whole number >= 0, got ${url.searchParams.get('since')}`);
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const rows = sim.ledger.since(since);
      for (let i = 0; i < rows.length; i += 1_000) {
        res.write(
          rows
            .slice(i, i + 1_000)
            .map((r) => JSON.stringify(r))
            .join('\n') + '\n',
        );
      }
      res.end();
      return;
    }
    if (path === '/stats' && method === 'GET') {
      const bucketMs = Number(url.searchParams.get('bucketMs') ?? 1_000);
      if (!Number.isFinite(bucketMs) || bucketMs < 1)
        throw new HttpError(400, `bucketMs must be a number >= 1, got ${url.searchParams.get('bucketMs')}`);
      return sendJson(res, 200, {
        elapsedMs: Math.round(sim.elapsed()),
        ledgerRows: sim.ledger.size,
        keys: sim.ledger.stats(bucketMs),
      });
    }
    if (keyMatch) {
      const key = decodeURIComponent(keyMatch[1] ?? '');
      if (keyMatch[2] && (method === 'PATCH' || method === 'PUT')) {
        const limits = parseLimits(await body(), 'limits');
        if (!sim.setLimits(key, limits))
          throw new HttpError(404, `no key named "${key}"; create it with PUT /_sim/keys/${key}`);
        return sendJson(res, 200, { key, limits });
      }
      if (!keyMatch[2] && method === 'PUT') {
        const config = parseKeyConfig(await body(), `keys.${key}`);
        sim.setKey(key, config);
        return sendJson(res, 200, { key, config });
      }
      if (!keyMatch[2] && method === 'DELETE') {
        if (!sim.deleteKey(key)) throw new HttpError(404, `no key named "${key}"`);
        return sendJson(res, 200, { key, deleted: true });
      }
      if (!keyMatch[2] && method === 'GET') {
        const config = sim.currentConfig.keys[key];
        if (!config) throw new HttpError(404, `no key named "${key}"`);
        return sendJson(res, 200, { key, config });
      }
    }
    throw new HttpError(404, `no control route ${method} /_sim${path}; see libs/provider-sim/README.md`);
  };

  const server: Server = createServer((req, res) => {
    const url = parseUrl(req.url ?? '/');
    const path = url.pathname;
    let work: Promise<void>;
    if (path.startsWith('/_sim/')) work = handleControl(req, res, url);
    else if (req.method === 'POST' && (path === '/v1/chat/completions' || path === '/chat/completions'))
      work = handleProvider(req, res, url, 'chat');
    else if (req.method === 'POST' && azurePath.test(path))
      work = handleProvider(req, res, url, 'azure', azurePath.exec(path)?.[1]);
    else if (req.method === 'POST' && geminiPath.test(path))
      work = handleProvider(req, res, url, 'gemini', geminiPath.exec(path)?.[1]);
    else {
      req.resume();
      return sendJson(res, 404, {
        error: {
          message: `Unknown request URL: ${req.method} ${path}.`,
          type: 'invalid_request_error',
          code: 'unknown_url',
        },
      });
    }
    work.catch((err: unknown) => {
      if (err instanceof SimConfigError)
        return sendJson(res, 400, { error: { code: err.code, path: err.path, message: err.message } });
      if (err instanceof HttpError) return sendJson(res, err.status, { error: { message: err.message } });
      sendJson(res, 500, { error: { message: `provider simulator failed: ${(err as Error).message}` } });
    });
  });
  server.keepAliveTimeout = 65_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    sim,
    port,
    url: `http://${address}:${port}`,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const res of hanging) res.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** Headers now, then the body a few bytes at a time. */
function sendSlowly(res: ServerResponse, reply: Reply, later: (ms: number, fn: () => void) => void): void {
  if (res.destroyed) return;
  res.writeHead(reply.status, { ...reply.headers, 'content-length': Buffer.byteLength(reply.body) });
  const body = Buffer.from(reply.body);
  let offset = 0;
  const step = () => {
    if (res.destroyed) return;
    const next = body.subarray(offset, offset + 64);
    offset += next.length;
    if (offset >= body.length) return void res.end(next);
    res.write(next);
    later(50, step);
  };
  step();
}

export type { SimConfig };
