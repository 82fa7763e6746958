import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { createCertificateAuthority, createServingCertificate } from '../../src/tunnel/index.js';
import { waitUntil } from '../../src/testkit/index.js';

// What the proxy's integration tests share: a kubeconfig that points kubectl
// at the hub, and a small WebSocket echo server and client written by hand
// (RFC 6455: handshake and unfragmented frames only).

/** A kubeconfig for kubectl through the hub; the token sits in its own 0600 file, never on a command line. */
export async function hubKubeconfig(dir: string, server: string, token: string, caFile: string): Promise<{ kubeconfigPath: string; workDir: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, token, { mode: 0o600 });
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfigPath,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: hub\n  cluster:\n    server: ${server}\n    certificate-authority: ${caFile}`,
      'users:',
      `- name: operator\n  user:\n    tokenFile: ${tokenFile}`,
      'contexts:',
      '- name: hub\n  context:\n    cluster: hub\n    user: operator',
      'current-context: hub',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return { kubeconfigPath, workDir: dir };
}

const wsGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function acceptKey(key: string): string {
  return createHash('sha1').update(key + wsGuid).digest('base64');
}

/** One text frame; masked as a client must. */
export function wsFrame(text: string, masked: boolean): Buffer {
  const payload = Buffer.from(text);
  const len = payload.byteLength;
  const header = len < 126 ? Buffer.from([0x81, (masked ? 0x80 : 0) | len]) : Buffer.from([0x81, (masked ? 0x80 : 0) | 126, len >> 8, len & 0xff]);
  if (!masked) return Buffer.concat([header, payload]);
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([header, mask, body]);
}

/** Text frames in `buffer` (complete ones), and the bytes left over. */
export function wsParse(buffer: Buffer): { texts: string[]; rest: Buffer } {
  const texts: string[] = [];
  let offset = 0;
  for (;;) {
    if (buffer.byteLength - offset < 2) break;
    const masked = (buffer[offset + 1]! & 0x80) !== 0;
    let len = buffer[offset + 1]! & 0x7f;
    let at = offset + 2;
    if (len === 126) {
      if (buffer.byteLength - offset < 4) break;
      len = buffer.readUInt16BE(offset + 2);
      at += 2;
    }
    const mask = masked ? buffer.subarray(at, at + 4) : undefined;
    if (masked) at += 4;
    if (buffer.byteLength < at + len) break;
    const payload = Buffer.from(buffer.subarray(at, at + len));
    if (mask) for (let i = 0; i < payload.byteLength; i++) payload[i]! ^= mask[i % 4]!;
    texts.push(payload.toString('utf8'));
    offset = at + len;
  }
  return { texts, rest: buffer.subarray(offset) };
}

const largeChunk = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + 7) & 0xff));

/** What GET /large?bytes=N on the echo server answers. */
export function largeBody(total: number): Buffer {
  const out = Buffer.alloc(total);
  for (let at = 0; at < total; at += largeChunk.byteLength) largeChunk.copy(out, at, 0, Math.min(largeChunk.byteLength, total - at));
  return out;
}

/** An HTTPS WebSocket server (its own CA) that answers each text frame with "echo:<text>"; also answers GET / with "hello over https". */
export async function startWebSocketEchoServer(): Promise<{ server: Server; address: string; caPem: string; received: string[]; close(): Promise<void> }> {
  const ca = await createCertificateAuthority('proxy-test edge CA');
  const serving = await createServingCertificate(ca, ['localhost', '127.0.0.1']);
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const served = new WeakMap<object, number>();
  const server = createHttpsServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const count = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, count);
    // /drop-reused: a kept-alive connection closed just as a request arrives on it (its idle timeout).
    if (req.url === '/drop-reused' && count > 1) return void req.socket.destroy();
    const large = /^\/large\?bytes=(\d+)$/.exec(req.url ?? '');
    if (!large) return void res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello over https ${req.url}`);
    // A large download, written with backpressure: largeBody(n) is what arrives.
    const total = Number(large[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
    let sent = 0;
    const more = () => {
      while (sent < total) {
        const piece = largeChunk.subarray(0, Math.min(largeChunk.byteLength, total - sent));
        sent += piece.byteLength;
        if (!res.write(piece)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  server.on('upgrade', (req, socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const key = req.headers['sec-websocket-key'];
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string') return void socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      const { texts, rest } = wsParse(Buffer.concat([pending, chunk]));
      pending = rest;
      for (const text of texts) {
        received.push(text);
        socket.write(wsFrame(`echo:${text}`, false));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    address: `127.0.0.1:${port}`,
    caPem: ca.certPem,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A WebSocket client over a plain TCP (http) URL: sends the handshake with
 * the bearer token, waits for the 101, and gives send/received.
 */
export async function webSocketClient(
  connectSocket: () => Socket,
  path: string,
  token: string,
): Promise<{ status: string; send(text: string): void; texts: string[]; close(): void }> {
  const socket = connectSocket();
  socket.on('error', () => undefined);
  const key = Buffer.from('hawser-proxy-test').toString('base64');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer ${token}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let head = '';
  let pending: Buffer = Buffer.alloc(0);
  let upgraded = false;
  let answered = false;
  const texts: string[] = [];
  socket.on('data', (chunk: Buffer) => {
    if (upgraded) {
      const parsed = wsParse(Buffer.concat([pending, chunk]));
      pending = parsed.rest;
      texts.push(...parsed.texts);
      return;
    }
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    answered = true;
    upgraded = head.startsWith('HTTP/1.1 101');
    const after = Buffer.from(head.slice(end + 4), 'latin1');
    head = head.slice(0, end);
    if (upgraded && after.byteLength > 0) {
      const parsed = wsParse(after);
      pending = parsed.rest;
      texts.push(...parsed.texts);
    }
  });
  await waitUntil(() => answered, { timeoutMs: 30_000, what: 'the WebSocket handshake answer' });
  return { status: head.split('\r\n')[0]!, send: (text) => socket.write(wsFrame(text, true)), texts, close: () => socket.destroy() };
}
