import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentKeyPair,
  ErrorCode,
  generateAgentKeyPair,
  GrpcClientTransport,
  HawserError,
  hawserErrorFromStatus,
  type Inbound,
  signHello,
  wire,
} from '../../src/tunnel/index.js';
import type { KubeCluster, ManagedProcess } from '../../src/testkit/index.js';
import { adminToken, bootstrapToken, hawser, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// Bad input over the real gRPC tunnel: each refused with a stable code and a
// message naming the problem, counted on /metrics, and nothing else changes.

// Room for a hello carrying a 1 MB cluster name, which must be refused by validation, not by size.
const maxFrameBytes = 1536 * 1024;

describe('bad input is refused, counted, and changes nothing else', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let agent: ManagedProcess;
  let caPem: string;

  beforeAll(async () => {
    bed = await TestBed.create('bad');
    kube = await bed.kube('edge-good');
    hub = await bed.hub(['--auto-approve', `--max-frame-bytes=${maxFrameBytes}`]);
    caPem = await readFile(hub.caFile, 'utf8');
    agent = await bed.agent('edge-good', hub, kube, ['--cluster-status-update-frequency=1s', '--cluster-lease-duration=5s']);
    await until('edge-good ready', async () => readyStatus(await hub.cluster('edge-good')) === 'True');
  });

  afterAll(() => bed?.close());

  function client(): GrpcClientTransport {
    return new GrpcClientTransport({ target: hub.tunnel, tls: { caPem } });
  }

  /** Sends frames on a fresh stream; returns what came back and how the stream ended. */
  async function exchange(frames: wire.ConnectRequest[]): Promise<{ received: Array<Inbound<wire.ConnectResponse>>; closed: HawserError | undefined }> {
    const transport = client();
    const channel = transport.open();
    const received: Array<Inbound<wire.ConnectResponse>> = [];
    try {
      for (const f of frames) await channel.send(f);
      for await (const inbound of channel.frames()) {
        received.push(inbound);
        if (inbound.ok && inbound.frame.frame?.$case === 'welcome') break;
      }
      channel.close();
      return { received, closed: await channel.closed };
    } finally {
      transport.close();
    }
  }

  /** One key per cluster id: a test's hellos for one cluster come from one agent unless it passes another key. */
  const keys = new Map<string, AgentKeyPair>();

  /** A hello signed as an agent signs it (proof of possession of its key). */
  function hello(fields: Partial<wire.Hello>, name = 'edge-new', key?: AgentKeyPair): wire.ConnectRequest {
    const value: wire.Hello = {
      clusterId: randomUUID(),
      auth: { $case: 'bootstrapToken', value: bootstrapToken },
      registration: { name, namespace: '', clusterType: 'EdgeCluster', labels: {}, syncMode: wire.SyncMode.SYNC_MODE_DUAL },
      lastAckedRevision: 0,
      leaseDurationMs: 0,
      agentVersion: 'test',
      publicKey: Buffer.alloc(0),
      cacheQuarantines: 0,
      protocolVersion: 0,
      minProtocolVersion: 0,
      features: [],
      hubIncarnation: '',
      syncModeInEffect: wire.SyncMode.SYNC_MODE_UNSPECIFIED,
      desiredDigest: '',
      ...fields,
    };
    let signer = key ?? keys.get(value.clusterId);
    if (!signer) keys.set(value.clusterId, (signer = generateAgentKeyPair()));
    return { frame: { $case: 'hello', value: signHello(value, signer, Date.now()) } };
  }

  function goodbyeOf(received: Array<Inbound<wire.ConnectResponse>>): wire.Goodbye | undefined {
    for (const r of received) if (r.ok && r.frame.frame?.$case === 'goodbye') return r.frame.frame.value;
    return undefined;
  }

  async function snapshot() {
    return {
      cluster: await hub.cluster('edge-good'),
      clusters: (await hub.clusters()).map((c) => c.metadata.name).sort(),
      requests: (await hub.requests()).map((r) => r.metadata.name).sort(),
      sessions: await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-good' }),
    };
  }

  /**
   * Runs a refusal and checks, unconditionally, that it came as a Goodbye and a
   * status with `code`, was counted, and left everything else as it was, with
   * the good agent connected throughout.
   */
  async function expectRefused(code: ErrorCode, act: () => Promise<{ goodbye: wire.Goodbye | undefined; closed: HawserError | undefined }>) {
    const before = await snapshot();
    const countBefore = await hub.metric('hawser_hub_rejected_total', { code });
    const { goodbye, closed } = await act();
    expect(goodbye?.code).toBe(code);
    expect(closed).toBeInstanceOf(HawserError);
    expect(closed?.code).toBe(code);
    expect(await hub.metric('hawser_hub_rejected_total', { code })).toBe(countBefore + 1);
    const after = await snapshot();
    expect(after.clusters).toEqual(before.clusters);
    expect(after.requests).toEqual(before.requests);
    expect(after.sessions).toBe(before.sessions);
    expect(after.cluster?.spec).toEqual(before.cluster?.spec);
    expect(readyStatus(after.cluster)).toBe('True');
    // The good cluster keeps heartbeating through it all, on the stream it had.
    const seen = after.cluster?.status.lastObservedTime;
    await until('edge-good still reporting', async () => (await hub.cluster('edge-good'))?.status.lastObservedTime !== seen);
    expect(agent.running).toBe(true);
    expect(agent.lines().filter((l) => l.includes('"to":"backing-off"'))).toEqual([]);
    return { goodbye: goodbye!, closed: closed! };
  }

  it('wrong bootstrap token', async () => {
    const { goodbye, closed } = await expectRefused(ErrorCode.BadBootstrapToken, async () => {
      const r = await exchange([hello({ auth: { $case: 'bootstrapToken', value: 'zzzzzz.zzzzzzzzzzzzzzzz' } })]);
      return { goodbye: goodbyeOf(r.received), closed: r.closed };
    });
    expect(goodbye.message).toMatch(/bootstrap token/);
    expect(closed.message).toMatch(/bootstrap token/);
  });

  it('a credential used for a different cluster id', async () => {
    // A second cluster registers and gets its own credential ...
    const ownId = randomUUID();
    const registered = await exchange([hello({ clusterId: ownId }, 'edge-other')]);
    const welcome = registered.received.find((r) => r.ok && r.frame.frame?.$case === 'welcome');
    const credential = welcome?.ok && welcome.frame.frame?.$case === 'welcome' ? welcome.frame.frame.value.credential : '';
    expect(credential).toMatch(/^hwc_/);
    // ... and cannot act as any other cluster with it.
    const { goodbye } = await expectRefused(ErrorCode.CredentialClusterMismatch, async () => {
      const r = await exchange([hello({ clusterId: randomUUID(), auth: { $case: 'clusterCredential', value: credential } })]);
      return { goodbye: goodbyeOf(r.received), closed: r.closed };
    });
    expect(goodbye.message).toMatch(/different cluster/);
    // Nor can the bootstrap token take over the registered cluster: its id is bound to its key.
    await exchange([hello({ clusterId: ownId, auth: { $case: 'clusterCredential', value: credential } }, 'edge-other')]);
    const takeover = await exchange([hello({ clusterId: ownId }, 'edge-other', generateAgentKeyPair())]);
    expect(goodbyeOf(takeover.received)?.code).toBe(ErrorCode.KeyMismatch);
  });

  it('a registration with an invalid name and label', async () => {
    const { goodbye } = await expectRefused(ErrorCode.InvalidRegistration, async () => {
      const r = await exchange([
        hello({
          registration: { name: 'Bad_Name', namespace: '', clusterType: 'EdgeCluster', labels: { 'bad key!': 'v' }, syncMode: wire.SyncMode.SYNC_MODE_DUAL },
        }),
      ]);
      return { goodbye: goodbyeOf(r.received), closed: r.closed };
    });
    expect(goodbye.message).toContain('"Bad_Name"');
    expect(goodbye.message).toContain('"bad key!"');

    // The agent command refuses the same before dialling, naming the flag.
    const cli = await hawser(['agent', '--cluster-reg-name=Bad_Name', `--kubeconfig=${kube.kubeconfigPath}`, `--cache-dir=${bed.dir}/never`]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/HAWSER_INVALID_OPTION: .*cluster-reg-name "Bad_Name"/);
  });

  /** Writes raw bytes on a fresh stream; returns the Goodbye (if any) and the final status. */
  async function rawExchange(payload: Buffer): Promise<{ goodbye: wire.Goodbye | undefined; status: grpc.StatusObject; closed: HawserError }> {
    const transport = client();
    try {
      const call = transport.openRaw();
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      let goodbye: wire.Goodbye | undefined;
      call.on('data', (bytes: Buffer) => {
        const frame = wire.ConnectResponse.decode(bytes).frame;
        if (frame?.$case === 'goodbye') goodbye = frame.value;
      });
      call.on('error', () => {});
      call.write(payload);
      const s = await status;
      return { goodbye, status: s, closed: hawserErrorFromStatus(s) };
    } finally {
      transport.close();
    }
  }

  it('a garbage frame', async () => {
    let result: Awaited<ReturnType<typeof rawExchange>> | undefined;
    await expectRefused(ErrorCode.MalformedFrame, async () => {
      result = await rawExchange(Buffer.from('this is not protobuf \xff\xff\xff\xff', 'latin1'));
      return result;
    });
    expect(result?.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(result?.status.details).toMatch(/agent frame of \d+ bytes/);
  });

  it('an oversized frame', async () => {
    let result: Awaited<ReturnType<typeof rawExchange>> | undefined;
    await expectRefused(ErrorCode.OversizedFrame, async () => {
      result = await rawExchange(Buffer.alloc(maxFrameBytes + 1000, 7));
      return result;
    });
    expect(result?.status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(result?.status.details).toContain(`exceeds the limit of ${maxFrameBytes} bytes`);
  });

  it('a frame over grpc-js\'s own limit gets the same code, a Goodbye, and is counted', async () => {
    let result: Awaited<ReturnType<typeof rawExchange>> | undefined;
    await expectRefused(ErrorCode.OversizedFrame, async () => {
      result = await rawExchange(Buffer.alloc(maxFrameBytes * 2 + 1000, 7));
      return result;
    });
    expect(result?.status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(result?.status.details).toContain(`exceeds the limit of ${maxFrameBytes} bytes`);
  });

  it('a 1 MB cluster name is quoted bounded in the Goodbye, the status and the log, and the stream ends', async () => {
    const huge = 'x'.repeat(1_000_000);
    const { goodbye, closed } = await expectRefused(ErrorCode.InvalidRegistration, async () => {
      const r = await exchange([hello({}, huge)]);
      return { goodbye: goodbyeOf(r.received), closed: r.closed };
    });
    for (const message of [goodbye.message, closed.message]) {
      expect(message).toContain('(1000000 characters)');
      expect(message.length).toBeLessThan(2_000);
    }
    await until('the refusal logged', async () => hub.proc.lines().some((l) => l.includes(ErrorCode.InvalidRegistration) && l.includes('(1000000 characters)')));
    expect(hub.proc.lines().filter((l) => l.length > 4_000)).toEqual([]);
  });

  it('a registration with more labels than the bound', async () => {
    const labels = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`label-${i}`, 'v']));
    const { goodbye } = await expectRefused(ErrorCode.InvalidRegistration, async () => {
      const r = await exchange([
        hello({ registration: { name: 'edge-labels', namespace: '', clusterType: 'EdgeCluster', labels, syncMode: wire.SyncMode.SYNC_MODE_DUAL } }),
      ]);
      return { goodbye: goodbyeOf(r.received), closed: r.closed };
    });
    expect(goodbye.message).toContain('10000 labels exceed the limit of 1000');
  });

  it('heartbeats at flood rate end the session with a code', async () => {
    const transport = client();
    try {
      const channel = transport.open();
      await channel.send(hello({}, 'edge-flood'));
      const frames = channel.frames()[Symbol.asyncIterator]();
      const first = await frames.next();
      expect(first.value?.ok && first.value.frame.frame?.$case).toBe('welcome');
      const countBefore = await hub.metric('hawser_hub_rejected_total', { code: ErrorCode.HeartbeatFlood });
      let goodbye: wire.Goodbye | undefined;
      const reading = (async () => {
        for (;;) {
          const next = await frames.next();
          if (next.done) return;
          if (next.value.ok && next.value.frame.frame?.$case === 'goodbye') goodbye = next.value.frame.frame.value;
        }
      })();
      for (let sequence = 1; sequence <= 1_000 && !goodbye; sequence++) {
        await channel
          .send({ frame: { $case: 'heartbeat', value: { sequence, sentAtUnixMs: 0, lastRttMs: 0, statusUnchanged: false } } })
          .catch(() => undefined);
      }
      await reading;
      expect(goodbye?.code).toBe(ErrorCode.HeartbeatFlood);
      expect((await channel.closed)?.code).toBe(ErrorCode.HeartbeatFlood);
      expect(await hub.metric('hawser_hub_rejected_total', { code: ErrorCode.HeartbeatFlood })).toBe(countBefore + 1);
    } finally {
      transport.close();
    }
  });

  it('a connection that never finishes its TLS handshake is dropped by the hub', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: hub.tunnelPort });
    let dropped = false;
    socket.on('close', () => (dropped = true));
    socket.on('error', () => {});
    try {
      // The hub bounds the handshake at 10 s; Node's default would hold it 120 s.
      await until('the hub to drop the silent connection', async () => dropped, 30_000);
    } finally {
      socket.destroy();
    }
  });

  it('the hub bounds the HTTP/2 streams one connection may open', async () => {
    const session = http2Connect(`https://${hub.tunnel}`, { ca: caPem, servername: 'localhost' });
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('remoteSettings', () => resolve());
        session.once('error', reject);
      });
      expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
    } finally {
      session.destroy();
    }
  });

  it('malformed percent-encoding in an API path is a 400 with a code', async () => {
    const errorsBefore = hub.proc.lines().filter((l) => l.includes('api request failed')).length;
    // Authenticated first: an anonymous caller learns nothing about the path (401).
    expect((await fetch(`${hub.apiUrl}/api/v1/clusters/%E0%A4%A`)).status).toBe(401);
    const res = await fetch(`${hub.apiUrl}/api/v1/clusters/%E0%A4%A`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe(ErrorCode.MalformedPath);
    expect(hub.proc.lines().filter((l) => l.includes('api request failed')).length).toBe(errorsBefore);
  });
});
