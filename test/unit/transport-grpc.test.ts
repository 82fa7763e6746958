import { beforeAll } from 'vitest';
import { GrpcClientTransport, GrpcServerTransport } from '../../src/tunnel/grpc.js';
import { maxStreamChunkBytes, streamReadBufferBytes, streamWriteBufferBytes } from '../../src/tunnel/streams.js';
import { createCertificateAuthority, createServingCertificate, type CertificateAuthority, type ServingCertificate } from '../../src/tunnel/tls.js';
import { transportConformance } from './transport-conformance.js';

// Real grpc-js over loopback, with TLS as the hub serves it.

let ca: CertificateAuthority;
let serving: ServingCertificate;

beforeAll(async () => {
  ca = await createCertificateAuthority('transport-test-ca');
  serving = await createServingCertificate(ca, ['localhost', '127.0.0.1']);
});

/** grpc-js holds up to 16 messages in each call's readable buffer, and HTTP/2 a window (64 KiB by default) in flight. */
const grpcBufferedBytes = 16 * (maxStreamChunkBytes + 16) + 2 * 65_535;

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
