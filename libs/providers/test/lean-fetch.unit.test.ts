import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeanResponse, leanFetch } from '../src/lean-fetch.js';

describe('leanFetch (node:http keep-alive, for the SDKs)', () => {
  let server: Server;
  let base: string;
  const seen: Array<{ method?: string; headers: Record<string, unknown>; body: string }> = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, headers: req.headers, body });
        if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2_000);
        if (req.url === '/empty') return void res.writeHead(204).end();
        if (req.url === '/gzip') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
          return void res.end(gzipSync(JSON.stringify({ packed: true })));
        }
        res.writeHead(429, { 'content-type': 'application/json', 'x-ratelimit-remaining-requests': '0' });
        res.end(JSON.stringify({ echo: body }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const f = leanFetch();

  it('sends method, headers and body, and answers status, headers and body as fetch does', async () => {
    const res = await f(`${base}/v1/chat`, {
      method: 'POST',
      headers: new Headers({ authorization: 'Bearer k', 'content-type': 'application/json' }),
      body: JSON.stringify({ q: 'é' }),
    });
    expect(res.status).toBe(429);
    expect(res.ok).toBe(false);
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(await res.json()).toEqual({ echo: '{"q":"é"}' });
    expect(seen.at(-1)).toMatchObject({ method: 'POST', headers: { authorization: 'Bearer k' } });
  });

  it('rejects with an AbortError when its signal aborts (the SDKs read a timeout from it)', async () => {
    const c = new AbortController();
    setTimeout(() => c.abort(), 100);
    await expect(f(`${base}/slow`, { signal: c.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('answers with the bytes it read: text and json as often as asked, the raw text kept, a stream only on demand', async () => {
    const res = await f(`${base}/v1/chat`, { method: 'POST', body: 'x' });
    expect(res).toBeInstanceOf(LeanResponse);
    const lean = res as unknown as LeanResponse;
    expect(lean.rawText()).toBe('{"echo":"x"}');
    expect(await res.text()).toBe('{"echo":"x"}');
    expect(res.bodyUsed).toBe(true);
    expect(await res.json()).toEqual({ echo: 'x' });
    const chunks: Uint8Array[] = [];
    for await (const c of res.body!) chunks.push(c);
    expect(Buffer.concat(chunks).toString()).toBe('{"echo":"x"}');
    expect(res.url).toBe(`${base}/v1/chat`);
  });

  it('decodes a body a server compressed unasked, and gives no body for 204', async () => {
    expect(await (await f(`${base}/gzip`)).json()).toEqual({ packed: true });
    const empty = await f(`${base}/empty`);
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
  });
});
