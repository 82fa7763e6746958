import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentKeyPair,
  ErrorCode,
  generateAgentKeyPair,
  GrpcClientTransport,
  HawserError,
  type Inbound,
  signProof,
  wire,
} from '../../src/tunnel/index.js';
import type { KubeCluster, ManagedProcess } from '../../src/testkit/index.js';
import { bootstrapToken, hawser, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// Bad input over the real gRPC tunnel: each refused with a stable code and a
// message naming the problem, counted on /metrics, and nothing else changes.

const maxFrameBytes = 64 * 1024;

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
      ...fields,
    };
    let signer = key ?? keys.get(value.clusterId);
    if (!signer) keys.set(value.clusterId, (signer = generateAgentKeyPair()));
    value.publicKey = Buffer.from(signer.publicKeyDer);
    value.proof = signProof(
      {
        purpose: value.auth?.$case === 'clusterCredential' ? 'connect' : 'register',
        clusterId: value.clusterId,
        clusterName: value.registration?.name ?? '',
        publicKeyDer: signer.publicKeyDer,
        secret: value.auth?.value ?? '',
      },
      signer.privateKeyDer,
      Date.now(),
    );
    return { frame: { $case: 'hello', value } };
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

  /** Runs a refusal and checks it was counted and left everything else as it was. */
  async function expectRefused(code: ErrorCode, act: () => Promise<{ goodbye?: wire.Goodbye; closed?: HawserError }>) {
    const before = await snapshot();
    const countBefore = await hub.metric('hawser_hub_rejected_total', { code });
    const { goodbye, closed } = await act();
    if (goodbye) expect(goodbye.code).toBe(code);
    if (closed) expect(closed.code).toBe(code);
    expect(await hub.metric('hawser_hub_rejected_total', { code })).toBe(countBefore + 1);
    const after = await snapshot();
    expect(after.clusters).toEqual(before.clusters);
    expect(after.requests).toEqual(before.requests);
    expect(after.sessions).toBe(before.sessions);
    expect(after.cluster?.spec).toEqual(before.cluster?.spec);
    expect(readyStatus(after.cluster)).toBe('True');
    // The good cluster keeps heartbeating through it all.
    const seen = after.cluster?.status.lastObservedTime;
    await until('edge-good still reporting', async () => (await hub.cluster('edge-good'))?.status.lastObservedTime !== seen);
    return { goodbye, closed };
  }

  it('wrong bootstrap token', async () => {
    const { goodbye, closed } = await expectRefused(ErrorCode.BadBootstrapToken, async () => {
      const r = await exchange([hello({ auth: { $case: 'bootstrapToken', value: 'zzzzzz.zzzzzzzzzzzzzzzz' } })]);
      return { goodbye: goodbyeOf(r.received)!, closed: r.closed! };
    });
    expect(goodbye?.message).toMatch(/bootstrap token/);
    expect(closed).toBeInstanceOf(HawserError);
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
      return { goodbye: goodbyeOf(r.received)!, closed: r.closed! };
    });
    expect(goodbye?.message).toMatch(/different cluster/);
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
      return { goodbye: goodbyeOf(r.received)!, closed: r.closed! };
    });
    expect(goodbye?.message).toContain('"Bad_Name"');
    expect(goodbye?.message).toContain('"bad key!"');

    // The agent command refuses the same before dialling, naming the flag.
    const cli = await hawser(['agent', '--cluster-reg-name=Bad_Name', `--kubeconfig=${kube.kubeconfigPath}`, `--cache-dir=${bed.dir}/never`]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/HAWSER_INVALID_OPTION: .*cluster-reg-name "Bad_Name"/);
  });

  async function rawExchange(payload: Buffer): Promise<{ code: number; hawserCode: string | undefined; details: string }> {
    const transport = client();
    try {
      const call = transport.openRaw();
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      call.on('data', () => {});
      call.on('error', () => {});
      call.write(payload);
      const s = await status;
      return { code: s.code, hawserCode: s.metadata.get('hawser-error-code')[0] as string | undefined, details: s.details };
    } finally {
      transport.close();
    }
  }

  it('a garbage frame', async () => {
    let result: Awaited<ReturnType<typeof rawExchange>> | undefined;
    await expectRefused(ErrorCode.MalformedFrame, async () => {
      result = await rawExchange(Buffer.from('this is not protobuf \xff\xff\xff\xff', 'latin1'));
      return {};
    });
    expect(result?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(result?.hawserCode).toBe(ErrorCode.MalformedFrame);
    expect(result?.details).toMatch(/agent frame of \d+ bytes/);
  });

  it('an oversized frame', async () => {
    let result: Awaited<ReturnType<typeof rawExchange>> | undefined;
    await expectRefused(ErrorCode.OversizedFrame, async () => {
      result = await rawExchange(Buffer.alloc(maxFrameBytes + 1000, 7));
      return {};
    });
    expect(result?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(result?.hawserCode).toBe(ErrorCode.OversizedFrame);
    expect(result?.details).toContain(`exceeds the limit of ${maxFrameBytes} bytes`);
  });

  it('the good agent stayed connected throughout', async () => {
    expect(agent.running).toBe(true);
    expect(agent.lines().filter((l) => l.includes('"to":"backing-off"'))).toEqual([]);
  });
});
