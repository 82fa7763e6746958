// bench/reconnect --mode refusal-cost: what refusing one dial costs the hub's
// process, in CPU, at each point a refusal could happen:
//   tcp:         accepted and closed before any TLS (a net.Server in front);
//   tls:         a full TLS 1.3 handshake with the hub's certificate, then closed;
//   tls-resumed: the same with the agent's session ticket (after a first refusal
//                by the same hub process, the agent holds one);
//   hello:       what the hub does today: TLS, HTTP/2, the gRPC call, the
//                agent's hello read, a Goodbye HAWSER_HUB_BUSY with a retry-after.
// The server runs in a child process (this file, argv "serve"), so its CPU
// (process.cpuUsage) is its own; the client dials `count` times, 8 at once.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { ErrorCode, GrpcClientTransport, GrpcServerTransport, HawserError, wire } from '../src/tunnel/index.js';
import type { BenchPki } from './common.js';

type Mode = 'tcp' | 'tls' | 'tls-resumed' | 'hello';
const modes: Mode[] = ['tcp', 'tls', 'tls-resumed', 'hello'];

export interface RefusalCost {
  mode: Mode;
  dials: number;
  /** Server process CPU per refused dial. */
  cpuMsPerDial: number;
}

interface ServeMessage {
  port?: number;
  cpuMs?: number;
}

async function serve(mode: Mode, pki: BenchPki): Promise<void> {
  const tls = { certPem: readFileSync(pki.certFile, 'utf8'), keyPem: readFileSync(pki.keyFile, 'utf8') };
  let port: number;
  if (mode === 'tcp') {
    const server = netServer((socket) => socket.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  } else if (mode === 'tls' || mode === 'tls-resumed') {
    const server = tlsServer({ cert: tls.certPem, key: tls.keyPem, ALPNProtocols: ['h2'] }, (socket) => socket.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  } else {
    const transport = new GrpcServerTransport({ address: '127.0.0.1:0', tls });
    const listener = await transport.listen((channel) => {
      void (async () => {
        for await (const inbound of channel.frames()) {
          if (!inbound.ok) break;
          await channel.send({ frame: { $case: 'goodbye', value: { code: ErrorCode.HubBusy, message: 'busy', retryAfterMs: 1_000 } } });
          channel.close(new HawserError(ErrorCode.HubBusy, 'busy', { retryAfterMs: 1_000 }));
          break;
        }
      })();
    });
    port = Number(listener.address.slice(listener.address.lastIndexOf(':') + 1));
  }
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  process.on('message', () => process.send!({ cpuMs: cpuMs() } satisfies ServeMessage));
  process.send!({ port } satisfies ServeMessage);
}

async function dial(mode: Mode, port: number, caPem: string, session: { ticket?: Buffer }): Promise<void> {
  if (mode === 'tcp') {
    await new Promise<void>((resolve) => {
      const s = netConnect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => resolve());
    });
    return;
  }
  if (mode === 'tls' || mode === 'tls-resumed') {
    await new Promise<void>((resolve, reject) => {
      const s = tlsConnect({ port, host: '127.0.0.1', ca: caPem, servername: 'localhost', ALPNProtocols: ['h2'], ...(mode === 'tls-resumed' && session.ticket ? { session: session.ticket } : {}) });
      s.on('session', (t: Buffer) => (session.ticket = t));
      s.on('secureConnect', () => {
        if (mode === 'tls-resumed' && session.ticket && !s.isSessionReused()) reject(new Error('the ticket was not resumed'));
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      s.resume();
    });
    return;
  }
  const transport = new GrpcClientTransport({ target: `127.0.0.1:${port}`, tls: { caPem, serverNameOverride: 'localhost' } });
  try {
    const channel = transport.open();
    await channel.send({ frame: { $case: 'hello', value: wire.Hello.fromPartial({ clusterId: '00000000-0000-4000-8000-000000000000' }) } }).catch(() => undefined);
    for await (const inbound of channel.frames()) if (!inbound.ok) break;
    await channel.closed;
  } finally {
    transport.close();
  }
}

export async function runRefusalCostBench(o: { pki: BenchPki; dials: number }): Promise<RefusalCost[]> {
  const caPem = readFileSync(o.pki.caFile, 'utf8');
  const results: RefusalCost[] = [];
  for (const mode of modes) {
    const child = fork(fileURLToPath(import.meta.url), ['serve', mode, JSON.stringify(o.pki)], { stdio: 'inherit' });
    const next = () => new Promise<ServeMessage>((resolve) => child.once('message', (m) => resolve(m as ServeMessage)));
    const { port } = await next();
    const session: { ticket?: Buffer } = {};
    // A first dial outside the count: the server's lazy setup, and the ticket for tls-resumed.
    await dial(mode, port!, caPem, session);
    child.send('cpu');
    const before = (await next()).cpuMs!;
    let left = o.dials;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (left-- > 0) await dial(mode, port!, caPem, session);
      }),
    );
    child.send('cpu');
    const after = (await next()).cpuMs!;
    child.kill('SIGKILL');
    results.push({ mode, dials: o.dials, cpuMsPerDial: (after - before) / o.dials });
    console.error(`refusal-cost ${mode}: ${((after - before) / o.dials).toFixed(3)} ms of server CPU per refused dial`);
  }
  return results;
}

if (process.argv[2] === 'serve') {
  serve(process.argv[3] as Mode, JSON.parse(process.argv[4]!) as BenchPki).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
