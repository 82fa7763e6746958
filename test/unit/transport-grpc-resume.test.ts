import { beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, type HawserError } from '../../src/tunnel/errors.js';
import { GrpcClientTransport, GrpcServerTransport } from '../../src/tunnel/grpc.js';
import { createCertificateAuthority, createServingCertificate, type CertificateAuthority, type ServingCertificate } from '../../src/tunnel/tls.js';
import type { TunnelListener } from '../../src/tunnel/transport.js';

// TLS session resumption on the agent's redial: the next dial to the same hub
// resumes, and a cached session never lets another server through.

let ca: CertificateAuthority;
let serving: ServingCertificate;
let otherServing: ServingCertificate;

beforeAll(async () => {
  ca = await createCertificateAuthority('resume-test-ca');
  serving = await createServingCertificate(ca, ['localhost', '127.0.0.1']);
  // Another hub's certificate: same names, a CA the agent does not trust.
  otherServing = await createServingCertificate(await createCertificateAuthority('resume-test-other-ca'), ['localhost', '127.0.0.1']);
});

async function hubAt(address: string, certificate: ServingCertificate): Promise<TunnelListener> {
  const server = new GrpcServerTransport({ address, tls: { certPem: certificate.certPem, keyPem: certificate.keyPem } });
  return server.listenConnections((c) => c.acceptStreams({ onStream: () => {}, announce: async () => {} }));
}

/** One session: dial, wait for the hub's session token (the handshake is done), end it. */
async function dialOnce(client: GrpcClientTransport): Promise<void> {
  const agent = client.connect();
  await agent.sessionToken();
  agent.close();
  await agent.closed;
}

describe('agent TLS session resumption', () => {
  it('the second dial to the same hub resumes the first session', async () => {
    const hub = await hubAt('127.0.0.1:0', serving);
    const client = new GrpcClientTransport({ target: hub.address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
    try {
      await dialOnce(client);
      expect(client.tlsSessions).toMatchObject({ full: 1, resumed: 0 });
      expect(client.tlsSessions.session).toBeInstanceOf(Buffer);
      await dialOnce(client);
      await dialOnce(client);
      expect(client.tlsSessions).toMatchObject({ full: 1, resumed: 2 });
    } finally {
      client.close();
      await hub.close(0);
    }
  });

  it('a hub with another certificate at the same address is refused although a session is cached', async () => {
    const first = await hubAt('127.0.0.1:0', serving);
    const address = first.address;
    const client = new GrpcClientTransport({ target: address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
    try {
      await dialOnce(client);
      expect(client.tlsSessions.session).toBeInstanceOf(Buffer);
      await first.close(0);

      const impostor = await hubAt(address, otherServing);
      try {
        const agent = client.connect();
        const ended = (await agent.closed) as HawserError;
        expect(ended.code).toBe(ErrorCode.UntrustedHub);
        expect(client.tlsSessions).toMatchObject({ full: 1, resumed: 0 });
        // The failed handshake dropped the cached session.
        expect(client.tlsSessions.session).toBeUndefined();
      } finally {
        await impostor.close(0);
      }
    } finally {
      client.close();
    }
  });

  it('a restarted hub (same certificate, new ticket keys) gets a full, verified handshake', async () => {
    const first = await hubAt('127.0.0.1:0', serving);
    const address = first.address;
    const client = new GrpcClientTransport({ target: address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
    try {
      await dialOnce(client);
      await first.close(0);
      const restarted = await hubAt(address, serving);
      try {
        await dialOnce(client);
        expect(client.tlsSessions).toMatchObject({ full: 2, resumed: 0 });
      } finally {
        await restarted.close(0);
      }
    } finally {
      client.close();
    }
  });

  it('a change of trusted CAs forgets the cached session', async () => {
    const hub = await hubAt('127.0.0.1:0', serving);
    const client = new GrpcClientTransport({ target: hub.address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
    try {
      await dialOnce(client);
      client.setExtraTrustedCas([]);
      expect(client.tlsSessions.session).toBeUndefined();
      await dialOnce(client);
      expect(client.tlsSessions).toMatchObject({ full: 2, resumed: 0 });
    } finally {
      client.close();
      await hub.close(0);
    }
  });
});
