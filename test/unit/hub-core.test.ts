import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  clusterIdLabel,
  clusterNameLabel,
  dedicatedNamespaceFor,
  type ManagedCluster,
  readyCondition,
  registrationRequestName,
  unreachableTaintKey,
} from '../../src/api/index.js';
import { SyncMode } from '../../src/gen/hawser/v1/tunnel.js';
import { defaultHubCoreOptions, HubCore } from '../../src/hub/hub.js';
import { HubMetrics } from '../../src/hub/metrics.js';
import type { HubStore } from '../../src/hub/store.js';
import { generateBootstrapToken, hashSecret } from '../../src/hub/tokens.js';
import { generateAgentKeyPair, publicKeyFingerprint } from '../../src/tunnel/proof.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { MemoryTransport } from '../../src/tunnel/memory.js';
import {
  agentKey,
  clusterStatus,
  FakeAgent,
  helloFrame,
  type HelloSpec,
  metricValue,
  type RawAgentChannel,
  rejectedCount,
  settle,
  silentLogger,
  startTestHub,
  type TestHub,
  waitFor,
} from './support.js';

/** Small enough that a hello with a big label set exceeds it; far above every normal frame. */
const maxFrameBytes = 4_096;

let hub: TestHub;

afterEach(async () => {
  await hub?.close();
});

/** Registers a new cluster with the bootstrap token; returns its open agent and credential. */
async function register(spec: Omit<HelloSpec, 'clusterId' | 'token'> & { clusterId?: string } = {}) {
  const clusterId = spec.clusterId ?? randomUUID();
  const agent = FakeAgent.open(hub);
  await agent.send(helloFrame({ ...spec, clusterId, token: hub.token }));
  const welcome = await agent.expectFrame('welcome');
  return { agent, clusterId, welcome, credential: welcome.credential };
}

async function connectWithCredential(clusterId: string, credential: string, extra: Partial<HelloSpec> = {}) {
  const agent = FakeAgent.open(hub);
  await agent.send(helloFrame({ ...extra, clusterId, credential }));
  return agent;
}

async function storedCluster(name: string): Promise<ManagedCluster> {
  const cluster = await hub.store.get('ManagedCluster', name);
  if (!cluster) throw new Error(`no ManagedCluster ${name}`);
  return cluster;
}

/**
 * Everything the hub stores, as text: for "nothing else changes". Contents
 * only: a write of the same content (a session's markReachable racing the
 * snapshot) moves resourceVersions without changing anything.
 */
async function snapshot(): Promise<string> {
  // Status writes trail their acks (they are queued): compare what the store holds once they landed.
  await hub.core.statusWritesSettled();
  const contents = async (kind: 'ManagedCluster' | 'ClusterRegistrationRequest' | 'ClusterCredential') =>
    (await hub.store.list(kind)).items.map(({ object }) => JSON.stringify(object, (k, v: unknown) => (k === 'resourceVersion' ? undefined : v)));
  return JSON.stringify({
    clusters: await contents('ManagedCluster'),
    requests: await contents('ClusterRegistrationRequest'),
    credentials: await contents('ClusterCredential'),
  });
}

describe('HubCore registration', () => {
  beforeEach(async () => {
    hub = await startTestHub({}, { maxFrameBytes });
  });

  it('welcomes a new cluster with a credential and stores it with its labels and namespace', async () => {
    const clusterId = randomUUID();
    const { agent, welcome, credential } = await register({
      clusterId,
      name: 'edge-berlin',
      labels: { env: 'prod', 'topology.kubernetes.io/region': 'eu-central' },
    });

    expect(welcome.clusterName).toBe('edge-berlin');
    expect(welcome.dedicatedNamespace).toBe(dedicatedNamespaceFor(clusterId));
    expect(credential).toMatch(/^hwc_[A-Za-z0-9_-]{43}$/);
    expect(welcome.leaseDurationMs).toBe(60_000);
    expect(welcome.heartbeatIntervalMs).toBe(20_000);

    const cluster = await storedCluster('edge-berlin');
    expect(cluster.kind).toBe('ManagedCluster');
    expect(cluster.metadata.namespace).toBe(dedicatedNamespaceFor(clusterId));
    expect(cluster.metadata.labels).toEqual({
      env: 'prod',
      'topology.kubernetes.io/region': 'eu-central',
      [clusterIdLabel]: clusterId,
      [clusterNameLabel]: 'edge-berlin',
    });
    expect(cluster.spec).toMatchObject({ clusterId, clusterType: 'EdgeCluster', syncMode: 'Dual', taints: [] });

    const request = await hub.store.get('ClusterRegistrationRequest', registrationRequestName(clusterId));
    expect(request?.status).toMatchObject({ result: 'Approved', managedClusterName: 'edge-berlin' });

    // Only the hash of the credential is kept, bound to this cluster.
    const record = await hub.store.get('ClusterCredential', hashSecret(credential));
    expect(record).toMatchObject({ clusterId, clusterName: 'edge-berlin' });
    expect(record?.confirmedAt).toBeUndefined();
    expect(JSON.stringify(await hub.store.list('ClusterCredential'))).not.toContain(credential);

    await agent.heartbeat();
    expect(hub.core.connectedClusters).toEqual(['edge-berlin']);
    expect(await metricValue(hub.metrics, 'hawser_hub_registrations_total', { result: 'registered' })).toBe(1);
  });

  it('welcomes a reconnect with the credential without issuing a new one', async () => {
    const { agent, clusterId, credential } = await register();
    agent.channel.close();
    await waitFor('the first session to end', () => hub.core.connectedClusters.length === 0);

    const again = await connectWithCredential(clusterId, credential);
    const welcome = await again.expectFrame('welcome');
    expect(welcome.clusterName).toBe('edge-1');
    expect(welcome.credential).toBe('');
    expect(welcome.dedicatedNamespace).toBe(dedicatedNamespaceFor(clusterId));
    await again.heartbeat();

    expect((await hub.store.list('ManagedCluster')).items).toHaveLength(1);
    expect((await hub.store.list('ClusterRegistrationRequest')).items).toHaveLength(1);
    const records = (await hub.store.list('ClusterCredential')).items.map((e) => e.object);
    expect(records).toHaveLength(1);
    expect(records[0]!.hash).toBe(hashSecret(credential));
    expect(records[0]!.confirmedAt).toBeDefined();
    expect(await metricValue(hub.metrics, 'hawser_hub_registrations_total', { result: 'reconnected' })).toBe(1);
    expect(await metricValue(hub.metrics, 'hawser_hub_sessions_total', { cluster: 'edge-1' })).toBe(2);
  });

  it('re-issues a credential to the bootstrap token signed with the cluster key, keeping the previous one valid', async () => {
    const first = await register();
    first.agent.channel.close();
    const second = await register({ clusterId: first.clusterId });
    expect(second.credential).not.toBe('');
    expect(second.credential).not.toBe(first.credential);
    expect(second.welcome.credentialExpiresAtUnixMs).toBe(hub.clock.now() + defaultHubCoreOptions.credentialTtlMs);

    // The old one stays until the agent has stored the new one and it ages out.
    const records = (await hub.store.list('ClusterCredential')).items.map((e) => e.object);
    expect(records.map((r) => r.hash).sort()).toEqual([hashSecret(first.credential), hashSecret(second.credential)].sort());
    second.agent.channel.close();
    const fresh = await connectWithCredential(first.clusterId, second.credential);
    expect((await fresh.expectFrame('welcome')).credential).toBe('');
  });

  it('keeps only the newest few credentials of a cluster', async () => {
    const first = await register();
    first.agent.channel.close();
    for (let i = 0; i < 4; i++) (await register({ clusterId: first.clusterId })).agent.channel.close();
    expect((await hub.store.list('ClusterCredential')).items).toHaveLength(3);
    const stale = await connectWithCredential(first.clusterId, first.credential);
    await stale.expectGoodbye(ErrorCode.BadCredential);
  });

  it('shows the fingerprint of the bound key on the ManagedCluster and in the welcome', async () => {
    const { clusterId, welcome } = await register({ name: 'edge-fp' });
    const fingerprint = publicKeyFingerprint(agentKey(clusterId).publicKeyDer);
    expect(fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect((await storedCluster('edge-fp')).spec.publicKeyFingerprint).toBe(fingerprint);
    expect(welcome.publicKeyFingerprint).toBe(fingerprint);
  });

  it('hands out the hub default lease, or the asked one clamped to the hub bounds', async () => {
    expect((await register({ name: 'asks-nothing' })).welcome.leaseDurationMs).toBe(60_000);
    const tiny = (await register({ name: 'asks-tiny', leaseDurationMs: 10 })).welcome;
    expect(tiny.leaseDurationMs).toBe(1_000);
    expect(tiny.heartbeatIntervalMs).toBe(333);
    expect((await register({ name: 'asks-huge', leaseDurationMs: 10 * 3_600_000 })).welcome.leaseDurationMs).toBe(3_600_000);
    expect((await register({ name: 'asks-fine', leaseDurationMs: 45_000 })).welcome.leaseDurationMs).toBe(45_000);
  });

  it('answers every heartbeat with its sequence and the new lease expiry', async () => {
    const { agent } = await register({ leaseDurationMs: 30_000 });
    const first = await agent.heartbeat();
    expect(first.leaseExpiresAtUnixMs).toBe(hub.clock.now() + 30_000);
    hub.clock.advance(10_000);
    const second = await agent.heartbeat();
    expect(second.leaseExpiresAtUnixMs).toBe(hub.clock.now() + 30_000);
    expect(second.leaseExpiresAtUnixMs - first.leaseExpiresAtUnixMs).toBe(10_000);
  });

  it('applies the status a heartbeat carries to the ManagedCluster', async () => {
    const { agent } = await register();
    await agent.heartbeat(clusterStatus('ok'));
    const cluster = await storedCluster('edge-1');
    expect(cluster.status).toMatchObject({
      k8sVersion: 'v1.33.1',
      platform: 'linux/amd64',
      apiserverURL: 'https://10.0.0.1:6443',
      healthz: true,
      livez: true,
      readyz: true,
      allocatable: { cpu: '3500m', memory: '6Gi' },
      capacity: { cpu: '4', memory: '8Gi' },
      nodeStatistics: { readyNodes: 2, notReadyNodes: 1, unknownNodes: 0 },
      clusterCIDR: '10.244.0.0/16',
      serviceCIDR: '10.96.0.0/12',
      leaseDurationSeconds: 60,
    });
    expect(readyCondition(cluster)?.status).toBe('True');
    expect(await metricValue(hub.metrics, 'hawser_cluster_ready', { cluster: 'edge-1' })).toBe(1);

    await agent.heartbeat(clusterStatus('failed: HTTP 500'));
    const notReady = await storedCluster('edge-1');
    expect(readyCondition(notReady)?.status).toBe('False');
    expect(notReady.status.readyz).toBe(false);
    expect(await metricValue(hub.metrics, 'hawser_cluster_ready', { cluster: 'edge-1' })).toBe(0);
  });
});

describe('HubCore protocol versioning', () => {
  it('answers with the newest common version and the features both name, and records them on the session', async () => {
    hub = await startTestHub({ features: ['sync', 'proxy-streams'] });
    const { welcome } = await register({ name: 'edge-new', protocolVersion: 1, minProtocolVersion: 1, features: ['sync', 'chunks'] });
    expect(welcome.protocolVersion).toBe(1);
    expect(welcome.features).toEqual(['sync']);
    const negotiated = hub.core.session('edge-new')?.negotiated;
    expect(negotiated?.protocolVersion).toBe(1);
    expect([...(negotiated?.features ?? [])]).toEqual(['sync']);
  });

  it('serves an agent from before versioning as protocol 1 with no features', async () => {
    hub = await startTestHub({ features: ['sync'] });
    const { agent, welcome } = await register({ name: 'edge-old', features: ['sync'] });
    expect(welcome.protocolVersion).toBe(1);
    expect(welcome.features).toEqual([]);
    expect(hub.core.session('edge-old')?.negotiated.features.size).toBe(0);
    await agent.heartbeat();
  });

  it('refuses an agent that no longer speaks any version of the hub, before it registers', async () => {
    hub = await startTestHub();
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-future', protocolVersion: 3, minProtocolVersion: 2 }));
    const goodbye = await agent.expectGoodbye(ErrorCode.ProtocolIncompatible);
    expect(goodbye.message).toContain('upgrade the hub');
    expect((await hub.store.list('ManagedCluster')).items).toEqual([]);
    expect(await rejectedCount(hub.metrics, ErrorCode.ProtocolIncompatible)).toBe(1);
  });
});

describe('HubCore refusals change nothing else', () => {
  let registered: { agent: FakeAgent; clusterId: string; credential: string };

  beforeEach(async () => {
    hub = await startTestHub({}, { maxFrameBytes });
    // A registered cluster that has used its credential, connected and healthy.
    const first = await register({ name: 'edge-1', labels: { env: 'prod' } });
    first.agent.channel.close();
    await waitFor('the registration session to end', () => hub.core.connectedClusters.length === 0);
    const agent = await connectWithCredential(first.clusterId, first.credential);
    await agent.expectFrame('welcome');
    await agent.heartbeat();
    registered = { agent, clusterId: first.clusterId, credential: first.credential };
  });

  /**
   * Runs one bad attempt on a fresh channel and checks: goodbye with `code`,
   * the channel closed, the refusal counted once, nothing stored changed, and
   * the registered cluster still heartbeats on its own stream.
   */
  async function expectRefusal(code: string, attempt: (agent: FakeAgent) => Promise<void> | void) {
    const before = await snapshot();
    const countBefore = await rejectedCount(hub.metrics, code);
    const connectedBefore = await metricValue(hub.metrics, 'hawser_hub_open_streams');

    const bad = FakeAgent.open(hub);
    await attempt(bad);
    const goodbye = await bad.expectGoodbye(code);
    expect(bad.isClosed).toBe(true);

    expect(await rejectedCount(hub.metrics, code)).toBe(countBefore + 1);
    await waitFor('the refused channel to be released', async () => (await metricValue(hub.metrics, 'hawser_hub_open_streams')) === connectedBefore);
    expect(await snapshot()).toBe(before);

    await registered.agent.heartbeat();
    expect(registered.agent.isClosed).toBe(false);
    expect(hub.core.connectedClusters).toEqual(['edge-1']);
    expect(await snapshot()).toBe(before);
    return goodbye;
  }

  it('refuses a wrong bootstrap token', async () => {
    await expectRefusal(ErrorCode.BadBootstrapToken, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: 'wrong0.0000000000000000', name: 'intruder' })),
    );
    expect(await hub.store.get('ManagedCluster', 'intruder')).toBeUndefined();
  });

  it('refuses a wrong bootstrap token presented for a registered cluster id', async () => {
    await expectRefusal(ErrorCode.BadBootstrapToken, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, token: 'wrong0.0000000000000000' })),
    );
  });

  it('refuses a hello with neither token nor credential', async () => {
    await expectRefusal(ErrorCode.BadBootstrapToken, (a) => a.send(helloFrame({ clusterId: randomUUID(), name: 'anon' })));
  });

  it('refuses a takeover: the bootstrap token and a public cluster id with another key', async () => {
    const goodbye = await expectRefusal(ErrorCode.KeyMismatch, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, token: hub.token, name: 'edge-1', key: generateAgentKeyPair() })),
    );
    expect(goodbye.message).toContain(registered.clusterId);
    expect(goodbye.message).toContain('hawser delete cluster edge-1');
    // The real agent's credential still admits it.
    const again = await connectWithCredential(registered.clusterId, registered.credential);
    expect((await again.expectFrame('welcome')).clusterName).toBe('edge-1');
  });

  it('refuses the cluster credential signed with another key', async () => {
    await expectRefusal(ErrorCode.KeyMismatch, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, credential: registered.credential, key: generateAgentKeyPair() })),
    );
  });

  it('refuses a replayed hello: the same signed frame twice', async () => {
    const frame = helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-replayed' });
    const first = FakeAgent.open(hub);
    await first.send(frame);
    await first.expectFrame('welcome');
    first.channel.close();
    await waitFor('the first session to end', () => !hub.core.connectedClusters.includes('edge-replayed'));
    // The first session's own status write lands before "nothing else changes" takes its picture.
    await waitFor('the first session marked reachable', async () => ((await hub.store.get('ManagedCluster', 'edge-replayed'))?.status.conditions.length ?? 0) > 0);
    // A recorded hello replayed while still inside the time window.
    await expectRefusal(ErrorCode.SignatureReplayed, (a) => a.send(frame));
  });

  it('refuses a hello with no key and proof, a forged signature, or a stale time', async () => {
    await expectRefusal(ErrorCode.BadSignature, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, credential: registered.credential, unsigned: true })),
    );
    const forged = helloFrame({ clusterId: registered.clusterId, credential: registered.credential });
    if (forged.frame?.$case !== 'hello') throw new Error('not a hello');
    // Signed for another purpose: the signature does not cover this hello.
    forged.frame.value.auth = { $case: 'bootstrapToken', value: hub.token };
    await expectRefusal(ErrorCode.BadSignature, (a) => a.send(forged));
    const stale = await expectRefusal(ErrorCode.BadSignature, (a) =>
      a.send(
        helloFrame({
          clusterId: registered.clusterId,
          credential: registered.credential,
          signedAtMs: hub.clock.now() - defaultHubCoreOptions.helloClockSkewMs - 1,
        }),
      ),
    );
    expect(stale.message).toContain("check the agent's clock");
  });

  it('refuses the bootstrap token re-registering a used cluster id under another name', async () => {
    await expectRefusal(ErrorCode.AlreadyRegistered, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, token: hub.token, name: 'edge-renamed' })),
    );
    expect(await hub.store.get('ManagedCluster', 'edge-renamed')).toBeUndefined();
  });

  it('refuses a credential presented with another cluster id', async () => {
    const otherId = randomUUID();
    const goodbye = await expectRefusal(ErrorCode.CredentialClusterMismatch, (a) =>
      a.send(helloFrame({ clusterId: otherId, credential: registered.credential })),
    );
    expect(goodbye.message).toContain(otherId);
  });

  it('refuses an unknown credential', async () => {
    await expectRefusal(ErrorCode.BadCredential, (a) =>
      a.send(helloFrame({ clusterId: registered.clusterId, credential: 'hwc_not-a-real-credential' })),
    );
  });

  it('refuses a name another cluster already has', async () => {
    const goodbye = await expectRefusal(ErrorCode.ClusterNameTaken, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-1' })),
    );
    expect(goodbye.message).toContain('"edge-1"');
  });

  it('refuses an invalid cluster name, naming the field and the value', async () => {
    const goodbye = await expectRefusal(ErrorCode.InvalidRegistration, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'Bad_Name' })),
    );
    expect(goodbye.message).toContain('clusterName');
    expect(goodbye.message).toContain('"Bad_Name"');
  });

  it('refuses an invalid label key, naming the key', async () => {
    const goodbye = await expectRefusal(ErrorCode.InvalidRegistration, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-2', labels: { 'bad key!': 'v' } })),
    );
    expect(goodbye.message).toContain('clusterLabels');
    expect(goodbye.message).toContain('"bad key!"');
  });

  it('refuses an invalid label value, naming the value', async () => {
    const goodbye = await expectRefusal(ErrorCode.InvalidRegistration, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-2', labels: { tier: 'not ok' } })),
    );
    expect(goodbye.message).toContain('"not ok"');
  });

  it('refuses a cluster id that is not a UUID, naming it', async () => {
    const goodbye = await expectRefusal(ErrorCode.InvalidRegistration, (a) =>
      a.send(helloFrame({ clusterId: 'not-a-uuid', token: hub.token, name: 'edge-2' })),
    );
    expect(goodbye.message).toContain('clusterId');
    expect(goodbye.message).toContain('"not-a-uuid"');
  });

  it('refuses a sync mode it does not know, naming the field', async () => {
    const frame = helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-2' });
    if (frame.frame?.$case !== 'hello') throw new Error('unreachable');
    frame.frame.value.registration!.syncMode = 99 as SyncMode;
    const goodbye = await expectRefusal(ErrorCode.InvalidRegistration, (a) => a.send(frame));
    expect(goodbye.message).toContain('syncMode');
  });

  it('refuses raw garbage bytes as a malformed frame', async () => {
    await expectRefusal(ErrorCode.MalformedFrame, (a) => a.channel.sendRaw(Uint8Array.from([0x0a, 0x05, 0x01])));
  });

  it('refuses a valid protobuf that carries no frame as malformed', async () => {
    await expectRefusal(ErrorCode.MalformedFrame, (a) => a.channel.sendRaw(new Uint8Array(0)));
  });

  it('refuses a frame over the size limit, naming the sizes', async () => {
    const labels = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`label-${i}`, 'x'.repeat(40)]));
    const goodbye = await expectRefusal(ErrorCode.OversizedFrame, (a) =>
      a.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-big', labels })),
    );
    expect(goodbye.message).toContain(`${maxFrameBytes} bytes`);
    const size = Number(/of (\d+) bytes/.exec(goodbye.message)?.[1]);
    expect(size).toBeGreaterThan(maxFrameBytes);
  });

  it('refuses a first frame that is not a hello', async () => {
    await expectRefusal(ErrorCode.UnexpectedFrame, (a) =>
      a.send({ frame: { $case: 'heartbeat', value: { sequence: 1, sentAtUnixMs: 0, status: undefined, lastRttMs: 0, statusUnchanged: false } } }),
    );
  });

  it('refuses a channel that says nothing within the hello timeout', async () => {
    await expectRefusal(ErrorCode.RegistrationTimeout, async (a) => {
      await waitFor('the hub to start waiting for hello', async () => (await metricValue(hub.metrics, 'hawser_hub_open_streams')) === 2);
      hub.clock.advance(15_000 - 1);
      await settle();
      expect(a.received).toEqual([]);
      expect(a.isClosed).toBe(false);
      hub.clock.advance(1);
    });
  });

  it('counts each refusal under its own code', async () => {
    const attempts: Array<[string, (a: FakeAgent) => Promise<void> | void]> = [
      [ErrorCode.BadBootstrapToken, (a) => a.send(helloFrame({ clusterId: randomUUID(), token: 'nope' }))],
      [ErrorCode.BadCredential, (a) => a.send(helloFrame({ clusterId: randomUUID(), credential: 'hwc_nope' }))],
      [ErrorCode.MalformedFrame, (a) => a.channel.sendRaw(Uint8Array.from([0xff]))],
      [ErrorCode.BadBootstrapToken, (a) => a.send(helloFrame({ clusterId: randomUUID(), token: 'still-nope' }))],
    ];
    for (const [code, attempt] of attempts) await expectRefusal(code, attempt);
    expect(await rejectedCount(hub.metrics, ErrorCode.BadBootstrapToken)).toBe(2);
    expect(await rejectedCount(hub.metrics, ErrorCode.BadCredential)).toBe(1);
    expect(await rejectedCount(hub.metrics, ErrorCode.MalformedFrame)).toBe(1);
    expect(await rejectedCount(hub.metrics, ErrorCode.CredentialClusterMismatch)).toBe(0);
  });

  it('closes a registered session that sends garbage, and only that session', async () => {
    const other = await register({ name: 'edge-2' });
    await other.agent.heartbeat();
    const before = await rejectedCount(hub.metrics, ErrorCode.MalformedFrame);
    other.agent.channel.sendRaw(Uint8Array.from([0x0a, 0x05, 0x01]));
    await other.agent.expectGoodbye(ErrorCode.MalformedFrame);
    expect(await rejectedCount(hub.metrics, ErrorCode.MalformedFrame)).toBe(before + 1);
    await waitFor('edge-2 to leave the session list', () => !hub.core.connectedClusters.includes('edge-2'));
    await registered.agent.heartbeat();
    expect(hub.core.connectedClusters).toEqual(['edge-1']);
  });

  it('lets a second connection supersede the first for the same cluster', async () => {
    const second = await connectWithCredential(registered.clusterId, registered.credential);
    expect((await second.expectFrame('welcome')).clusterName).toBe('edge-1');

    const goodbye = await registered.agent.expectGoodbye(ErrorCode.Superseded);
    expect(goodbye.message).toContain('"edge-1"');
    expect(await rejectedCount(hub.metrics, ErrorCode.Superseded)).toBe(1);

    // The old stream's teardown must not remove the new session.
    await waitFor('the superseded channel to be released', async () => (await metricValue(hub.metrics, 'hawser_hub_connected_agents')) === 1);
    expect(hub.core.connectedClusters).toEqual(['edge-1']);
    const ack = await second.heartbeat(clusterStatus('ok'));
    expect(ack.leaseExpiresAtUnixMs).toBe(hub.clock.now() + 60_000);
    expect(readyCondition(await storedCluster('edge-1'))?.status).toBe('True');
    expect(await metricValue(hub.metrics, 'hawser_hub_sessions_total', { cluster: 'edge-1' })).toBe(3);
  });

  it('tells connected agents the hub is shutting down on stop', async () => {
    await hub.core.stop();
    const reason = await registered.agent.channel.closed;
    expect(reason?.code).toBe(ErrorCode.HubShuttingDown);
    expect(hub.core.connectedClusters).toEqual([]);
  });
});

describe('HubCore approval', () => {
  beforeEach(async () => {
    hub = await startTestHub({ autoApprove: false });
  });

  it('keeps a new cluster pending until approved, then welcomes it on the same stream', async () => {
    const clusterId = randomUUID();
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame({ clusterId, token: hub.token, name: 'edge-wait', labels: { env: 'lab' } }));

    const pending = await agent.expectFrame('registrationPending');
    expect(pending.requestName).toBe(registrationRequestName(clusterId));
    expect(pending.message).toContain('edge-wait');
    const request = await hub.store.get('ClusterRegistrationRequest', pending.requestName);
    expect(request?.status.result).toBe('Pending');
    expect((await hub.store.list('ManagedCluster')).items).toEqual([]);
    expect((await hub.store.list('ClusterCredential')).items).toEqual([]);
    expect(await metricValue(hub.metrics, 'hawser_hub_registrations_total', { result: 'pending' })).toBe(1);
    await settle();
    expect(agent.unread).toEqual([]);

    const approved = await hub.core.registrar.approve('edge-wait', 'tester');
    expect(approved.request.status.result).toBe('Approved');

    const welcome = await agent.expectFrame('welcome');
    expect(welcome.clusterName).toBe('edge-wait');
    expect(welcome.credential).toMatch(/^hwc_/);
    expect(welcome.dedicatedNamespace).toBe(dedicatedNamespaceFor(clusterId));
    const cluster = await storedCluster('edge-wait');
    expect(cluster.metadata.labels).toMatchObject({ env: 'lab', [clusterIdLabel]: clusterId });
    expect(await hub.store.get('ClusterCredential', hashSecret(welcome.credential))).toMatchObject({ clusterId });
    await agent.heartbeat();
    expect(hub.core.connectedClusters).toEqual(['edge-wait']);
  });

  it('approves by request name too, and refuses to approve an unknown name', async () => {
    const clusterId = randomUUID();
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame({ clusterId, token: hub.token, name: 'edge-req' }));
    const pending = await agent.expectFrame('registrationPending');
    await hub.core.registrar.approve(pending.requestName, 'tester');
    expect((await agent.expectFrame('welcome')).clusterName).toBe('edge-req');

    await expect(hub.core.registrar.approve('no-such-cluster', 'tester')).rejects.toMatchObject({ code: ErrorCode.NotFound });
    await expect(hub.core.registrar.approve('no-such-cluster', 'tester')).rejects.toThrow('"no-such-cluster"');
  });

  it('lets a pending agent hang up without leaking its session', async () => {
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-gone' }));
    await agent.expectFrame('registrationPending');
    expect(await metricValue(hub.metrics, 'hawser_hub_open_streams')).toBe(1);
    agent.channel.close();
    await waitFor('the pending channel to be released', async () => (await metricValue(hub.metrics, 'hawser_hub_open_streams')) === 0);
    expect(hub.core.connectedClusters).toEqual([]);

    // Approval afterwards creates the cluster; the agent collects its credential when it returns.
    await hub.core.registrar.approve('edge-gone', 'tester');
    expect(await hub.store.get('ManagedCluster', 'edge-gone')).toBeDefined();
  });
});

describe('HubCore pending caps, TTL, deny and delete', () => {
  async function pendingAgent(name: string, extra: Partial<HelloSpec> = {}) {
    const clusterId = extra.clusterId ?? randomUUID();
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame({ clusterId, token: hub.token, name, ...extra }));
    return { agent, clusterId };
  }

  it('caps pending requests per bootstrap token and in total, with a clear code', async () => {
    const second = generateBootstrapToken();
    hub = await startTestHub({ autoApprove: false, maxPendingPerToken: 2, maxPendingTotal: 3 });
    (hub.core as unknown as { options: { bootstrapTokens: string[] } }).options.bootstrapTokens = [hub.token, second];
    for (const name of ['p-1', 'p-2']) await (await pendingAgent(name)).agent.expectFrame('registrationPending');
    const third = await pendingAgent('p-3');
    const perToken = await third.agent.expectGoodbye(ErrorCode.TooManyPendingRegistrations);
    expect(perToken.message).toContain('limit 2');
    expect(perToken.retryAfterMs).toBeGreaterThan(0);
    // Another token still has room, until the total is reached.
    await (await pendingAgent('q-1', { token: second })).agent.expectFrame('registrationPending');
    const total = await pendingAgent('q-2', { token: second });
    expect((await total.agent.expectGoodbye(ErrorCode.TooManyPendingRegistrations)).message).toContain('limit 3');
    // A known request is not a new one: its agent may reconnect while the cap is full.
    expect((await hub.store.list('ClusterRegistrationRequest')).items).toHaveLength(3);
    // Deciding one frees a slot.
    await hub.core.registrar.deny('p-1', 'tester');
    await (await pendingAgent('q-3', { token: second })).agent.expectFrame('registrationPending');
  });

  it('expires a pending request after its TTL: the waiting agent is told and the squatted name comes free', async () => {
    hub = await startTestHub({ autoApprove: false, pendingRegistrationTtlMs: 60_000 });
    const squatter = await pendingAgent('edge-squatted');
    await squatter.agent.expectFrame('registrationPending');
    const other = await pendingAgent('edge-squatted');
    await other.agent.expectGoodbye(ErrorCode.ClusterNameTaken);

    hub.clock.advance(60_000);
    await squatter.agent.expectGoodbye(ErrorCode.RegistrationExpired);
    expect((await hub.store.list('ClusterRegistrationRequest')).items).toEqual([]);
    const owner = await pendingAgent('edge-squatted');
    await owner.agent.expectFrame('registrationPending');
    await hub.core.registrar.approve('edge-squatted', 'tester');
    expect((await owner.agent.expectFrame('welcome')).clusterName).toBe('edge-squatted');
  });

  it('expires a squatted request a disconnected agent left behind when the next registration comes', async () => {
    hub = await startTestHub({ autoApprove: false, pendingRegistrationTtlMs: 60_000 });
    const squatter = await pendingAgent('edge-left');
    await squatter.agent.expectFrame('registrationPending');
    squatter.agent.channel.close();
    await waitFor('the squatter gone', async () => (await metricValue(hub.metrics, 'hawser_hub_open_streams')) === 0);
    hub.clock.advance(60_001);
    const owner = await pendingAgent('edge-left');
    await owner.agent.expectFrame('registrationPending');
  });

  it('deny: the waiting agent gets REGISTRATION_DENIED, the name comes free, and the id stays refused', async () => {
    hub = await startTestHub({ autoApprove: false });
    const { agent, clusterId } = await pendingAgent('edge-denied');
    const pending = await agent.expectFrame('registrationPending');
    const { request, audit } = await hub.core.registrar.deny(pending.requestName, 'alice');
    expect(request.status).toMatchObject({ result: 'Denied' });
    expect(audit).toMatchObject({ actor: 'alice', action: 'deny', cluster: 'edge-denied', clusterId });
    await agent.expectGoodbye(ErrorCode.RegistrationDenied);

    const again = await pendingAgent('edge-denied', { clusterId });
    await again.agent.expectGoodbye(ErrorCode.RegistrationDenied);
    const other = await pendingAgent('edge-denied');
    await other.agent.expectFrame('registrationPending');
    await expect(hub.core.registrar.approve(pending.requestName, 'alice')).rejects.toMatchObject({ code: ErrorCode.RegistrationDenied });
  });

  it('deny refuses an approved request, pointing at delete cluster', async () => {
    hub = await startTestHub({ autoApprove: true });
    const { agent } = await pendingAgent('edge-ok');
    await agent.expectFrame('welcome');
    await expect(hub.core.registrar.deny('edge-ok', 'alice')).rejects.toThrow('hawser delete cluster edge-ok');
  });

  it('delete cluster: closes the live session, revokes credentials, frees name and key; a fresh registration waits for approval', async () => {
    hub = await startTestHub({ autoApprove: false });
    const { agent, clusterId } = await pendingAgent('edge-del');
    await agent.expectFrame('registrationPending');
    await hub.core.registrar.approve('edge-del', 'alice');
    const welcome = await agent.expectFrame('welcome');
    await agent.heartbeat();

    const { audit } = await hub.core.registrar.deleteCluster('edge-del', 'alice');
    expect(audit).toMatchObject({ actor: 'alice', action: 'delete-cluster', cluster: 'edge-del', clusterId, credentialsRevoked: 1 });
    await agent.expectGoodbye(ErrorCode.ClusterDeleted);
    expect((await hub.store.list('ManagedCluster')).items).toEqual([]);
    expect((await hub.store.list('ClusterRegistrationRequest')).items).toEqual([]);
    expect((await hub.store.list('ClusterCredential')).items).toEqual([]);
    const revoked = FakeAgent.open(hub);
    await revoked.send(helloFrame({ clusterId, credential: welcome.credential }));
    await revoked.expectGoodbye(ErrorCode.BadCredential);

    // The agent lost its key (new cache): same name, new id and key, after an operator's decision.
    const fresh = await pendingAgent('edge-del', { key: generateAgentKeyPair() });
    await fresh.agent.expectFrame('registrationPending');
    await hub.core.registrar.approve('edge-del', 'alice');
    expect((await fresh.agent.expectFrame('welcome')).clusterName).toBe('edge-del');
    await expect(hub.core.registrar.deleteCluster('no-such', 'alice')).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('removes the wait of an agent that hangs up (no listener leak)', async () => {
    hub = await startTestHub({ autoApprove: false });
    for (let i = 0; i < 20; i++) {
      const { agent } = await pendingAgent(`edge-hang-${i}`);
      await agent.expectFrame('registrationPending');
      agent.channel.close();
    }
    await waitFor('every pending stream released', async () => (await metricValue(hub.metrics, 'hawser_hub_open_streams')) === 0);
    expect((hub.core.registrar as unknown as { waiters: Map<string, unknown> }).waiters.size).toBe(0);
  });

  it('loads its index again after a failed load instead of failing forever', async () => {
    hub = await startTestHub({ autoApprove: true });
    const list = hub.store.list.bind(hub.store);
    let fail = true;
    hub.store.list = (async (kind: never) => {
      if (fail) throw new Error('store unavailable');
      return list(kind);
    }) as typeof hub.store.list;
    const first = await pendingAgent('edge-idx');
    await first.agent.expectGoodbye(ErrorCode.Internal).catch(() => undefined);
    fail = false;
    const second = await pendingAgent('edge-idx');
    expect((await second.agent.expectFrame('welcome')).clusterName).toBe('edge-idx');
  });
});

describe('HubCore credential lifetime', () => {
  beforeEach(async () => {
    hub = await startTestHub({ credentialTtlMs: 90_000 });
  });

  it('renews the credential of a signed hello in its last third, and refuses an expired one', async () => {
    const { agent, clusterId, credential } = await register();
    agent.channel.close();
    hub.clock.advance(30_000);
    const early = await connectWithCredential(clusterId, credential);
    expect((await early.expectFrame('welcome')).credential).toBe('');
    early.channel.close();

    hub.clock.advance(31_000);
    const due = await connectWithCredential(clusterId, credential);
    const renewed = await due.expectFrame('welcome');
    expect(renewed.credential).toMatch(/^hwc_/);
    expect(renewed.credentialExpiresAtUnixMs).toBe(hub.clock.now() + 90_000);
    due.channel.close();

    hub.clock.advance(30_000);
    const expired = await connectWithCredential(clusterId, credential);
    expect((await expired.expectGoodbye(ErrorCode.BadCredential)).message).toContain('expired');
    const fresh = await connectWithCredential(clusterId, renewed.credential);
    expect((await fresh.expectFrame('welcome')).clusterName).toBe('edge-1');
  });
});

describe('HubCore leases and taints', () => {
  beforeEach(async () => {
    hub = await startTestHub();
  });

  it('marks a silent cluster Unknown and taints it, and a heartbeat clears both', async () => {
    const { agent } = await register({ name: 'edge-lease', leaseDurationMs: 5_000 });
    const welcomeAt = hub.clock.now();
    await agent.heartbeat(clusterStatus('ok'));
    expect(readyCondition(await storedCluster('edge-lease'))?.status).toBe('True');

    hub.clock.advance(4_999);
    await settle();
    expect(await metricValue(hub.metrics, 'hawser_cluster_lease_expiries_total', { cluster: 'edge-lease' })).toBe(0);
    expect(readyCondition(await storedCluster('edge-lease'))?.status).toBe('True');

    hub.clock.advance(1);
    expect(hub.clock.now()).toBe(welcomeAt + 5_000);
    expect(await metricValue(hub.metrics, 'hawser_cluster_lease_expiries_total', { cluster: 'edge-lease' })).toBe(1);
    const expired = await waitFor('Ready Unknown after the lease ran out', async () => {
      const c = await storedCluster('edge-lease');
      return readyCondition(c)?.status === 'Unknown' ? c : undefined;
    });
    expect(expired.spec.taints).toContainEqual(
      expect.objectContaining({ key: unreachableTaintKey, effect: 'NoSchedule', timeAdded: new Date(welcomeAt + 5_000).toISOString() }),
    );
    expect(unreachableTaintKey).toBe('node.clusternet.io/unreachable');
    expect(readyCondition(expired)?.reason).toBe('ClusterStatusUnknown');
    expect(await metricValue(hub.metrics, 'hawser_cluster_ready', { cluster: 'edge-lease' })).toBe(-1);

    // More silence neither duplicates the taint nor counts the expiry again.
    hub.clock.advance(60_000);
    await settle();
    const still = await storedCluster('edge-lease');
    expect(still.spec.taints.filter((t) => t.key === unreachableTaintKey)).toHaveLength(1);
    expect(await metricValue(hub.metrics, 'hawser_cluster_lease_expiries_total', { cluster: 'edge-lease' })).toBe(1);

    await agent.heartbeat(clusterStatus('ok'));
    const back = await storedCluster('edge-lease');
    expect(readyCondition(back)?.status).toBe('True');
    expect(back.spec.taints.some((t) => t.key === unreachableTaintKey)).toBe(false);
    expect(await metricValue(hub.metrics, 'hawser_cluster_ready', { cluster: 'edge-lease' })).toBe(1);
  });

  it('an unchanged-status heartbeat moves lastObservedTime and nothing else, in memory until a batched flush', async () => {
    const { agent } = await register({ name: 'edge-same', leaseDurationMs: 60_000 });
    const { agent: other } = await register({ name: 'edge-same-2', leaseDurationMs: 60_000 });
    await agent.heartbeat(clusterStatus('ok'));
    await other.heartbeat(clusterStatus('ok'));
    const first = await storedCluster('edge-same');
    const versionBefore = (await hub.store.info()).resourceVersion;
    hub.clock.advance(30_000);
    await agent.heartbeat(undefined, 0, true);
    await other.heartbeat(undefined, 0, true);
    const observedAt = new Date(hub.clock.now()).toISOString();
    // Readers see it at once; the store has not been written (an idle agent costs no write).
    expect(hub.core.clusterView(await storedCluster('edge-same')).status.lastObservedTime).toBe(observedAt);
    expect((await storedCluster('edge-same')).status.lastObservedTime).toBe(first.status.lastObservedTime);
    expect((await hub.store.info()).resourceVersion).toBe(versionBefore);

    // Plain renewals within their leases write nothing either.
    for (let t = 0; t < 5; t++) {
      hub.clock.advance(50_000);
      await agent.heartbeat();
      await other.heartbeat();
    }
    expect((await hub.store.info()).resourceVersion).toBe(versionBefore);
    expect((await storedCluster('edge-same')).status.lastObservedTime).toBe(first.status.lastObservedTime);
    // The flush interval (5 minutes) passes: both clusters' times are written.
    hub.clock.advance(50_000);
    const second = await waitFor('lastObservedTime in the store', async () => {
      const c = await storedCluster('edge-same');
      return c.status.lastObservedTime === observedAt ? c : undefined;
    });
    expect((await storedCluster('edge-same-2')).status.lastObservedTime).toBe(observedAt);
    expect({ ...second.status, lastObservedTime: '' }).toEqual({ ...first.status, lastObservedTime: '' });
    // A plain lease renewal does not claim a fresh observation.
    hub.clock.advance(10_000);
    await agent.heartbeat();
    await settle();
    expect((await storedCluster('edge-same')).status.lastObservedTime).toBe(second.status.lastObservedTime);
    expect(hub.core.clusterView(await storedCluster('edge-same')).status.lastObservedTime).toBe(second.status.lastObservedTime);
  });

  it('flushes held observed times in one batch; a cluster written meanwhile falls back to its own write', async () => {
    let batches = 0;
    let interfere: (() => Promise<void>) | undefined;
    const wrap = (store: HubStore): HubStore =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== 'batch') return Reflect.get(target, prop, receiver) as unknown;
          return async (...args: Parameters<HubStore['batch']>) => {
            batches++;
            const before = interfere;
            interfere = undefined;
            await before?.();
            return target.batch(...args);
          };
        },
      });
    await hub.close();
    hub = await startTestHub({}, { maxFrameBytes, wrapStore: wrap });
    const { agent: a } = await register({ name: 'edge-flush-a', leaseDurationMs: 600_000 });
    const { agent: b } = await register({ name: 'edge-flush-b', leaseDurationMs: 600_000 });
    await a.heartbeat(clusterStatus('ok'));
    await b.heartbeat(clusterStatus('ok'));
    hub.clock.advance(1_000);
    await a.heartbeat(undefined, 0, true);
    await b.heartbeat(undefined, 0, true);
    const firstAt = new Date(hub.clock.now()).toISOString();
    const batchesBefore = batches;
    hub.clock.advance(300_000);
    await waitFor('both flushed', async () =>
      (await storedCluster('edge-flush-a')).status.lastObservedTime === firstAt && (await storedCluster('edge-flush-b')).status.lastObservedTime === firstAt,
    );
    expect(batches - batchesBefore).toBe(1);

    // Next round, someone writes edge-flush-b between the flush's read and its batch.
    await a.heartbeat(undefined, 0, true);
    await b.heartbeat(undefined, 0, true);
    const secondAt = new Date(hub.clock.now()).toISOString();
    interfere = async () => {
      const c = await storedCluster('edge-flush-b');
      await hub.store.put('ManagedCluster', 'edge-flush-b', { ...c, metadata: { ...c.metadata, labels: { ...c.metadata.labels, touched: 'yes' } } });
    };
    hub.clock.advance(300_000);
    await waitFor('both flushed after the conflict', async () =>
      (await storedCluster('edge-flush-a')).status.lastObservedTime === secondAt && (await storedCluster('edge-flush-b')).status.lastObservedTime === secondAt,
    );
    expect((await storedCluster('edge-flush-b')).metadata.labels).toMatchObject({ touched: 'yes' });
  });

  it('a full report equal to the last written one is only an observation; a changed one is written', async () => {
    const { agent, clusterId, credential } = await register({ name: 'edge-repeat', leaseDurationMs: 600_000 });
    await agent.heartbeat(clusterStatus('ok'));
    const first = await storedCluster('edge-repeat');
    const versionBefore = (await hub.store.info()).resourceVersion;
    hub.clock.advance(30_000);
    await agent.heartbeat(clusterStatus('ok'));
    expect((await hub.store.info()).resourceVersion).toBe(versionBefore);
    expect(hub.core.clusterView(await storedCluster('edge-repeat')).status.lastObservedTime).toBe(new Date(hub.clock.now()).toISOString());
    hub.clock.advance(30_000);
    await agent.heartbeat(clusterStatus('failed: etcd'));
    const changed = await storedCluster('edge-repeat');
    expect(changed.status.readyz).toBe(false);
    expect(changed.status.lastObservedTime).toBe(new Date(hub.clock.now()).toISOString());
    expect(first.status.readyz).toBe(true);
    // A new session writes its first report even when it equals the last.
    const again = await connectWithCredential(clusterId, credential!, { name: 'edge-repeat', leaseDurationMs: 600_000 });
    await again.expectFrame('welcome');
    hub.clock.advance(30_000);
    await again.heartbeat(clusterStatus('failed: etcd'));
    expect((await storedCluster('edge-repeat')).status.lastObservedTime).toBe(new Date(hub.clock.now()).toISOString());
  });

  it('a held observed time goes out with the next write of its cluster, and on stop', async () => {
    const { agent } = await register({ name: 'edge-held', leaseDurationMs: 60_000 });
    await agent.heartbeat(clusterStatus('ok'));
    hub.clock.advance(5_000);
    await agent.heartbeat(undefined, 0, true);
    const heldAt = new Date(hub.clock.now()).toISOString();
    expect((await storedCluster('edge-held')).status.lastObservedTime).not.toBe(heldAt);
    // The lease runs out: that write carries the held time along.
    hub.clock.advance(60_000);
    const expired = await waitFor('Ready Unknown', async () => {
      const c = await storedCluster('edge-held');
      return readyCondition(c)?.status === 'Unknown' ? c : undefined;
    });
    expect(expired.status.lastObservedTime).toBe(heldAt);

    const { agent: late } = await register({ name: 'edge-stop', leaseDurationMs: 60_000 });
    await late.heartbeat(clusterStatus('ok'));
    hub.clock.advance(1_000);
    await late.heartbeat(undefined, 0, true);
    const lateAt = new Date(hub.clock.now()).toISOString();
    await hub.core.stop();
    expect((await storedCluster('edge-stop')).status.lastObservedTime).toBe(lateAt);
  });

  it('clears the taint on a heartbeat without status, with Ready following the last known readyz', async () => {
    const { agent } = await register({ name: 'edge-quiet', leaseDurationMs: 2_000 });
    await agent.heartbeat(clusterStatus('ok'));
    hub.clock.advance(2_000);
    await waitFor('the unreachable taint', async () =>
      (await storedCluster('edge-quiet')).spec.taints.some((t) => t.key === unreachableTaintKey),
    );
    await agent.heartbeat();
    const back = await storedCluster('edge-quiet');
    expect(back.spec.taints).toEqual([]);
    expect(readyCondition(back)?.status).toBe('True');
  });

  it('keeps Ready False (not True) after expiry when the returning cluster reports readyz failing', async () => {
    const { agent } = await register({ name: 'edge-sick', leaseDurationMs: 2_000 });
    hub.clock.advance(2_000);
    await waitFor('Ready Unknown', async () => readyCondition(await storedCluster('edge-sick'))?.status === 'Unknown');
    await agent.heartbeat(clusterStatus('failed: etcd'));
    const back = await storedCluster('edge-sick');
    expect(readyCondition(back)?.status).toBe('False');
    expect(back.spec.taints).toEqual([]);
  });

  it('heartbeats within the lease keep the cluster untainted', async () => {
    const { agent } = await register({ name: 'edge-steady', leaseDurationMs: 3_000 });
    await agent.heartbeat(clusterStatus('ok'));
    for (let i = 0; i < 10; i++) {
      hub.clock.advance(2_999);
      await agent.heartbeat();
    }
    await settle();
    expect(await metricValue(hub.metrics, 'hawser_cluster_lease_expiries_total', { cluster: 'edge-steady' })).toBe(0);
    const cluster = await storedCluster('edge-steady');
    expect(cluster.spec.taints).toEqual([]);
    expect(readyCondition(cluster)?.status).toBe('True');
  });

  it('expires only the cluster that went silent', async () => {
    const a = await register({ name: 'edge-a', leaseDurationMs: 4_000 });
    const b = await register({ name: 'edge-b', leaseDurationMs: 4_000 });
    await a.agent.heartbeat(clusterStatus('ok'));
    await b.agent.heartbeat(clusterStatus('ok'));
    hub.clock.advance(3_000);
    await a.agent.heartbeat();
    hub.clock.advance(1_000);
    await waitFor('edge-b Unknown', async () => readyCondition(await storedCluster('edge-b'))?.status === 'Unknown');
    const aNow = await storedCluster('edge-a');
    expect(readyCondition(aNow)?.status).toBe('True');
    expect(aNow.spec.taints).toEqual([]);
  });

  it('gives clusters known from before a restart one full lease to come back', async () => {
    const { agent, clusterId, credential } = await register({ name: 'edge-restart', leaseDurationMs: 10_000 });
    await agent.heartbeat(clusterStatus('ok'));
    const store = hub.store;
    const clock = hub.clock;
    await hub.core.stop();

    // A second hub core on the same store and clock.
    const metrics = new HubMetrics({ processMetrics: false });
    const core = new HubCore({ ...defaultHubCoreOptions, bootstrapTokens: [hub.token], autoApprove: true }, store, metrics, silentLogger, clock);
    const transport = new MemoryTransport();
    await core.start(transport);
    try {
      clock.advance(9_999);
      await settle();
      expect(readyCondition(await storedCluster('edge-restart'))?.status).toBe('True');
      clock.advance(1);
      await waitFor('Ready Unknown after the restart lease', async () => readyCondition(await storedCluster('edge-restart'))?.status === 'Unknown');

      const again = new FakeAgent(transport.client().open() as RawAgentChannel, () => core.statusWritesSettled());
      await again.send(helloFrame({ clusterId, credential, leaseDurationMs: 10_000 }));
      expect((await again.expectFrame('welcome')).credential).toBe('');
      await again.heartbeat();
      const back = await storedCluster('edge-restart');
      expect(back.spec.taints).toEqual([]);
      expect(readyCondition(back)?.status).toBe('True');
    } finally {
      await core.stop();
    }
  });
});
