import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

// The plain HTTP target of bench/proxy, in a process of its own so its CPU is
// not the client's: the same handler on 127.0.0.1 over HTTP and over HTTPS.
//   GET /small          a 512-byte JSON object (about a kube GET of one object)
//   GET /large?bytes=N  N bytes streamed from a 1 MiB buffer, honouring backpressure
//
// argv: <certFile> <keyFile>. Tells its parent {type:'listening', httpPort, httpsPort}.

export type FromTargetServer = { type: 'listening'; httpPort: number; httpsPort: number } | { type: 'fatal'; message: string };

export const smallBodyBytes = 512;
const small = Buffer.from(JSON.stringify({ kind: 'Small', padding: '' }).replace('""', `"${'x'.repeat(smallBodyBytes - 29)}"`));
if (small.length !== smallBodyBytes) throw new Error(`small body is ${small.length} bytes, want ${smallBodyBytes}`);
const chunk = Buffer.alloc(1 << 20, 'hawser-bench ');

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://target');
  if (req.method === 'GET' && url.pathname === '/small') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': small.length });
    res.end(small);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/large') {
    const bytes = Number(url.searchParams.get('bytes'));
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`bytes: "${url.searchParams.get('bytes')}" is not a byte count`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.once('close', () => {
      left = 0;
    });
    pump();
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

async function main(): Promise<void> {
  const [certFile, keyFile] = process.argv.slice(2);
  if (!certFile || !keyFile) throw new Error('usage: target-server <certFile> <keyFile>');
  const http = createHttpServer({ keepAliveTimeout: 60_000 }, handle);
  const https = createHttpsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), keepAliveTimeout: 60_000 }, handle);
  const [httpPort, httpsPort] = [await listen(http), await listen(https)];
  process.send?.({ type: 'listening', httpPort, httpsPort } satisfies FromTargetServer);
  process.on('disconnect', () => process.exit(0));
}

if (process.send) {
  main().catch((err: unknown) => {
    process.send?.({ type: 'fatal', message: String(err) } satisfies FromTargetServer);
    process.exit(1);
  });
}
