import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeStreamChunk } from '../../src/tunnel/chunk.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { GrpcClientTransport, GrpcServerTransport, grpcMaxStreamWindowBytes, hawserErrorFromStatus } from '../../src/tunnel/grpc.js';
import { maxStreamChunkBytes, streamReadBufferBytes, streamWriteBufferBytes } from '../../src/tunnel/streams.js';
import type { ByteStream, HubConnection, TunnelListener } from '../../src/tunnel/transport.js';
import { waitFor } from './support.js';
import { createCertificateAuthority, createServingCertificate, type CertificateAuthority, type ServingCertificate } from '../../src/tunnel/tls.js';
import { transportConformance } from './transport-conformance.js';

// Real grpc-js over loopback, with TLS as the hub serves it.

let ca: CertificateAuthority;
let serving: ServingCertificate;

beforeAll(async () => {
  ca = await createCertificateAuthority('transport-test-ca');
  serving = await createServingCertificate(ca, ['localhost', '127.0.0.1']);
});

/** grpc-js holds up to 16 messages in each call's readable buffer, and HTTP/2 a stream window in flight. */
const grpcBufferedBytes = 16 * (maxStreamChunkBytes + 16) + 2 * grpcMaxStreamWindowBytes;

transportConformance('gRPC over TLS', async () => {
  const server = new GrpcServerTransport({ address: '127.0.0.1:0', tls: { certPem: serving.certPem, keyPem: serving.keyPem } });
  let target = '';
  const clients: GrpcClientTransport[] = [];
  return {
    listenConnections: async (onConnection, events) => {
      const listener = await server.listenConnections(onConnection, events);
      target = listener.address;
      return listener;
    },
    client: () => {
      const client = new GrpcClientTransport({ target, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
      clients.push(client);
      return client;
    },
    bufferBoundBytes: streamWriteBufferBytes + streamReadBufferBytes + grpcBufferedBytes,
    close: async () => {
      for (const c of clients) c.close();
    },
  };
});

describe('gRPC request streams against a hostile agent', () => {
  let listener: TunnelListener | undefined;
  let client: GrpcClientTransport | undefined;
  afterEach(async () => {
    client?.close();
    await listener?.close(0);
    listener = client = undefined;
  });

  /** A hub whose sessions take every stream, and one agent connection to it. */
  async function hubAndAgent() {
    const server = new GrpcServerTransport({ address: '127.0.0.1:0', tls: { certPem: serving.certPem, keyPem: serving.keyPem } });
    const hubs: HubConnection[] = [];
    const refused: string[] = [];
    listener = await server.listenConnections(
      (c) => {
        hubs.push(c);
        c.acceptStreams({ onStream: () => {}, announce: async () => {} });
      },
      { streamRefused: (error) => refused.push(error.code) },
    );
    client = new GrpcClientTransport({ target: listener.address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' }, keepConnectionAfterSession: true });
    const agent = client.connect();
    const token = await agent.sessionToken();
    const hub = await waitFor('the hub connection', () => hubs[0]);
    return { agent, hub, token, refused, client };
  }

  /** How a raw Stream call ended: the HawserError code its status carries. */
  function outcome(call: grpc.ClientDuplexStream<Buffer, Buffer>): Promise<string> {
    call.on('data', () => {});
    call.on('error', () => {});
    return new Promise((resolve) => call.on('status', (status: grpc.StatusObject) => resolve(hawserErrorFromStatus(status).code)));
  }

  function accepted(call: grpc.ClientDuplexStream<Buffer, Buffer>): Promise<boolean> {
    return new Promise((resolve) => call.on('metadata', (m: grpc.Metadata) => resolve(m.get('hawser-stream')[0] === 'accepted')));
  }

  it("refuses a session's token once its control stream ended, even on the same HTTP/2 connection", async () => {
    const { agent, hub, token, refused, client } = await hubAndAgent();
    const before = client.openRawStream({ 'hawser-session': token, 'hawser-stream-kind': 'sync', 'hawser-stream-id': 'a7' });
    const beforeEnded = outcome(before);
    expect(await accepted(before)).toBe(true);
    agent.control.close();
    await hub.closed;
    // The stream it owned ended with it.
    expect(await beforeEnded).toBe(ErrorCode.SessionEnded);
    const after = client.openRawStream({ 'hawser-session': token, 'hawser-stream-kind': 'sync', 'hawser-stream-id': 'a8' });
    expect(await outcome(after)).toBe(ErrorCode.StreamUnbound);
    expect(refused).toEqual([ErrorCode.StreamUnbound]);
  });

  it('refuses a stream that names no session at all', async () => {
    const { refused, client } = await hubAndAgent();
    expect(await outcome(client.openRawStream({}))).toBe(ErrorCode.StreamUnbound);
    expect(await outcome(client.openRawStream({ 'hawser-session': '', 'hawser-stream-kind': 'sync' }))).toBe(ErrorCode.StreamUnbound);
    expect(refused).toEqual([ErrorCode.StreamUnbound, ErrorCode.StreamUnbound]);
  });

  it('refuses a stream message larger than one chunk, and the session goes on', async () => {
    const { hub, token, client } = await hubAndAgent();
    const call = client.openRawStream({ 'hawser-session': token, 'hawser-stream-kind': 'sync', 'hawser-stream-id': 'a1' });
    const ended = outcome(call);
    expect(await accepted(call)).toBe(true);
    call.write(encodeStreamChunk(Buffer.alloc(maxStreamChunkBytes * 4), false));
    expect(await ended).toBe(ErrorCode.OversizedFrame);
    await waitFor('the stream freed on the hub', () => hub.openStreams === 0);
    // The session goes on.
    let closed = false;
    void hub.closed.then(() => (closed = true));
    const next = client.openRawStream({ 'hawser-session': token, 'hawser-stream-kind': 'sync', 'hawser-stream-id': 'a2' });
    const nextEnded = outcome(next);
    expect(await accepted(next)).toBe(true);
    expect(closed).toBe(false);
    next.cancel();
    expect(await nextEnded).toBe(ErrorCode.Cancelled);
  });

  it('refuses malformed stream messages', async () => {
    const { token, client } = await hubAndAgent();
    const call = client.openRawStream({ 'hawser-session': token, 'hawser-stream-kind': 'sync', 'hawser-stream-id': 'a1' });
    const ended = outcome(call);
    expect(await accepted(call)).toBe(true);
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0x01]));
    expect(await ended).toBe(ErrorCode.MalformedFrame);
  });

  it('joins small writes made while a message is in flight into large messages, intact and in order', async () => {
    const { agent, hub } = await hubAndAgent();
    const onHub = new Promise<ByteStream>((resolve) => hub.acceptStreams({ onStream: resolve, announce: async () => {} }));
    const up = await agent.openStream('sync');
    const down = await onHub;
    const pieces = Array.from({ length: 2000 }, (_, i) => Buffer.alloc(1024, i % 251));
    const received: Uint8Array[] = [];
    const read = (async () => {
      for await (const chunk of down.chunks()) received.push(chunk);
    })();
    // Each write() resolves at once (there is room): the first goes out, the rest join behind it.
    for (const piece of pieces) await up.write(piece);
    await up.end();
    await down.end();
    await read;
    expect(Buffer.concat(received).equals(Buffer.concat(pieces))).toBe(true);
    // 2,000 KB in messages of at most one chunk (256 KB), not 2,000 messages.
    expect(received.length).toBeLessThanOrEqual(1 + Math.ceil((pieces.length * 1024) / maxStreamChunkBytes));
    expect(Math.max(...received.map((c) => c.byteLength))).toBe(maxStreamChunkBytes);
  });

  it('an early stream resolves before the hub took it; a refusal then fails the stream with its code', async () => {
    const { agent, refused } = await hubAndAgent();
    const stream = await agent.openStream('proxy', undefined, { requestId: 'h999', early: true });
    expect((await stream.closed)?.code).toBe(ErrorCode.StreamRefused);
    expect(refused).toEqual([ErrorCode.StreamRefused]);
    await expect(stream.write(Buffer.from('late'))).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
  });
});
