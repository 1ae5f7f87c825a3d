import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/**
 * A `fetch` for the provider SDKs' `fetch` option, on node:http's keep-alive agents: the request
 * is written at once and the answer read whole into a Response, without the web streams and
 * transferable abort signals Node's own `fetch` spends most of a call's CPU on (a profile of the
 * dispatcher put a quarter of its busy time there). Enough of fetch for a JSON API: method,
 * headers, a string or bytes body, an AbortSignal; a streamed answer is read whole. The answer is
 * a LeanResponse: what the SDKs read of a Response, over the bytes already read (a web Response
 * wraps them in a stream again, and reads them back through it).
 */
export function leanFetch(o: { maxSockets?: number } = {}): typeof fetch {
  const agents = {
    http: new HttpAgent({ keepAlive: true, maxSockets: o.maxSockets ?? 1_024 }),
    https: new HttpsAgent({ keepAlive: true, maxSockets: o.maxSockets ?? 1_024 }),
  };
  return (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    const secure = url.protocol === 'https:';
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, key) => (headers[key] = value));
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array))
      return Promise.reject(new TypeError('leanFetch sends a string or bytes body only'));
    return new Promise<Response>((resolve, reject) => {
      const signal = init.signal ?? undefined;
      if (signal?.aborted) return reject(abortError(signal));
      const req = (secure ? httpsRequest : httpRequest)(
        url,
        { method: init.method ?? 'GET', headers, agent: secure ? agents.https : agents.http },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const empty = status === 204 || status === 205 || status === 304;
            let bytes: Buffer = Buffer.concat(chunks);
            try {
              bytes = decoded(bytes, res.headers['content-encoding']);
            } catch (err) {
              return reject(err);
            }
            resolve(
              new LeanResponse(
                empty ? null : bytes,
                status,
                res.statusMessage ?? '',
                responseHeaders(res.headers),
                url.href,
              ) as unknown as Response,
            );
          });
        },
      );
      const onAbort = () => req.destroy(abortError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  };
}

/** A body a server compressed though not asked to (no accept-encoding is sent). */
function decoded(bytes: Buffer, encoding: string | undefined): Buffer {
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return gunzipSync(bytes);
    case 'deflate':
      return inflateSync(bytes);
    case 'br':
      return brotliDecompressSync(bytes);
    default:
      return bytes;
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const err = new Error(reason instanceof Error ? reason.message : 'This operation was aborted');
  err.name = 'AbortError';
  return err;
}

function responseHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.append(k, x);
    else out.set(k, v);
  }
  return out;
}

/**
 * What the SDKs read of a fetch Response (status, ok, headers, url, json(), text(), body), over an
 * answer already read whole. `rawText()` is the body as the provider sent it, for the outcome
 * record (re-serializing the parsed answer cost a JSON.stringify a call).
 */
export class LeanResponse {
  readonly ok: boolean;
  readonly redirected = false;
  readonly type = 'basic';
  private used = false;
  private text$: string | undefined;

  constructor(
    private readonly bytes: Buffer | null,
    readonly status: number,
    readonly statusText: string,
    readonly headers: Headers,
    readonly url: string,
  ) {
    this.ok = status >= 200 && status < 300;
  }

  /** A web stream of the bytes, made only if something reads it (a streamed answer's parser). */
  get body(): ReadableStream<Uint8Array> | null {
    const bytes = this.bytes;
    if (bytes === null) return null;
    return new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        c.close();
      },
    });
  }

  get bodyUsed(): boolean {
    return this.used;
  }

  /** The body as text, however often it is asked for (the SDK reads it once). */
  rawText(): string {
    this.text$ ??= this.bytes === null ? '' : this.bytes.toString('utf8');
    return this.text$;
  }

  text(): Promise<string> {
    this.used = true;
    return Promise.resolve(this.rawText());
  }

  async json(): Promise<unknown> {
    this.used = true;
    return JSON.parse(this.rawText()) as unknown;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    this.used = true;
    const b = this.bytes ?? Buffer.alloc(0);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  }

  clone(): LeanResponse {
    return new LeanResponse(this.bytes, this.status, this.statusText, this.headers, this.url);
  }
}
