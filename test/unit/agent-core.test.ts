import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readyCondition } from '../../src/api/index.js';
import { AgentCore, type AgentCoreOptions } from '../../src/agent/agent.js';
import { type AgentIdentity, identityFileName, IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import { type AgentState, type AgentStateKind, canTransition } from '../../src/agent/state.js';
import { syncStateCacheKey, writeSyncState } from '../../src/agent/sync-state.js';
import { Feature, protocolVersion } from '../../src/tunnel/negotiate.js';
import { OfflineCache } from '../../src/cache/index.js';
import { hashSecret } from '../../src/hub/tokens.js';
import { type BackoffPolicy, backoffCeilingMs } from '../../src/tunnel/backoff.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { MemoryTransport } from '../../src/tunnel/memory.js';
import type { HubChannel } from '../../src/tunnel/transport.js';
import type { ConnectRequest, ConnectResponse } from '../../src/gen/hawser/v1/tunnel.js';
import { clusterStatus, epoch, metricValue, rejectedCount, settle, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from './support.js';

const policy: BackoffPolicy = { baseMs: 1_000, capMs: 5_000, stableAfterMs: 60_000 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Newest first: agents before caches before hubs before directories.
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A random source that replays `values` in order and counts how many were used. */
function replay(values: readonly number[]) {
  let used = 0;
  const random = () => {
    if (used >= values.length) throw new Error(`random source exhausted after ${values.length} values`);
    return values[used++]!;
  };
  return { random, used: () => used };
}

async function hubFixture(options: Parameters<typeof startTestHub>[0] = {}, clockFrom?: TestHub): Promise<TestHub> {
  const hub = await startTestHub(options, clockFrom ? { clock: clockFrom.clock } : {});
  cleanups.push(() => hub.close());
  return hub;
}

async function cacheDir(): Promise<string> {
  const dir = await tempDir('agent');
  cleanups.push(() => dir.remove());
  return dir.path;
}

type TestCache = OfflineCache & { closeOnce(): Promise<void>; home: string };

/** The identity record as stored on disk (identity.json beside the LevelDB cache). */
async function readIdentity(cache: { home: string }): Promise<AgentIdentity | undefined> {
  const text = await readFile(join(cache.home, identityFileName), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as { identity: AgentIdentity }).identity;
}

/** Wraps an async action so only its first call runs (tests and cleanup may both stop a thing). */
function once(action: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= action());
}

async function openCache(dir: string): Promise<TestCache> {
  const cache = await OfflineCache.open({ dir: join(dir, 'db') });
  const close = once(() => cache.close());
  cleanups.push(close);
  return Object.assign(cache, { closeOnce: close, home: dir });
}

interface AgentHandle {
  core: AgentCore;
  states: AgentState[];
  cache: OfflineCache;
  loop: Promise<void>;
  stop(): Promise<void>;
}

function options(hub: Dialable, extra: Partial<AgentCoreOptions> = {}): AgentCoreOptions {
  return {
    clusterRegName: 'edge-agent',
    clusterType: 'EdgeCluster',
    clusterLabels: { env: 'test' },
    clusterSyncMode: 'Dual',
    clusterStatusUpdateFrequencyMs: 10_000,
    clusterLeaseDurationMs: 30_000,
    backoff: policy,
    bootstrapToken: hub.token,
    registerTimeoutMs: 10_000,
    missedHeartbeatLimit: 3,
    agentVersion: 'unit-test',
    ...extra,
  };
}

/** What an agent needs from a hub to dial it: a real TestHub or a scripted one. */
interface Dialable {
  transport: MemoryTransport;
  clock: ManualClock;
  token: string;
}

async function startAgent(
  hub: Dialable,
  cache: TestCache,
  random: () => number = () => 0.5,
  extra: Partial<AgentCoreOptions> = {},
): Promise<AgentHandle> {
  const core = new AgentCore(options(hub, extra), {
    transport: hub.transport.client(),
    reader: new StaticClusterReader(clusterStatus('ok')),
    cache,
    identityStore: new IdentityStore(cache.home),
    logger: silentLogger,
    clock: hub.clock,
    random,
  });
  const states: AgentState[] = [];
  core.on('state', (s) => states.push(s));
  expect(core.state.kind).toBe('idle');
  const loop = core.start();
  const stop = once(() => core.stop());
  cleanups.push(stop);
  return { core, states, cache, loop, stop };
}

const kinds = (states: AgentState[]) => states.map((s) => s.kind);

function readyState(states: AgentState[]) {
  return states.find((s): s is Extract<AgentState, { kind: 'ready' }> => s.kind === 'ready');
}

function backingOff(states: AgentState[]) {
  return states.filter((s): s is Extract<AgentState, { kind: 'backing-off' }> => s.kind === 'backing-off');
}

/** Every recorded transition, starting from idle, is one the state machine allows. */
function expectLegalPath(states: AgentState[]): void {
  let from: AgentStateKind = 'idle';
  for (const s of states) {
    expect(canTransition(from, s.kind), `${from} -> ${s.kind}`).toBe(true);
    from = s.kind;
  }
}

describe('AgentCore', () => {
  it('goes idle -> connecting -> registering -> ready and persists its credential', async () => {
    const hub = await hubFixture();
    const dir = await cacheDir();
    const cache = await openCache(dir);
    const agent = await startAgent(hub, cache);

    await waitFor('the agent to be ready', () => agent.core.state.kind === 'ready');
    expect(kinds(agent.states)).toEqual(['connecting', 'registering', 'ready']);
    expect(agent.states[0]).toEqual({ kind: 'connecting', attempt: 0 });
    expect(readyState(agent.states)).toEqual({ kind: 'ready', clusterName: 'edge-agent', since: hub.clock.now() });

    // The hub has the cluster, with the agent's labels, and the heartbeat's status makes it Ready.
    const clusterId = agent.core.clusterId!;
    expect(clusterId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const cluster = await waitFor('the cluster to turn Ready', async () => {
      const c = await hub.store.get('ManagedCluster', 'edge-agent');
      return c && readyCondition(c)?.status === 'True' ? c : undefined;
    });
    expect(cluster.spec.clusterId).toBe(clusterId);
    expect(cluster.metadata.labels).toMatchObject({ env: 'test' });
    expect(cluster.status.k8sVersion).toBe('v1.33.1');
    expect(hub.core.connectedClusters).toEqual(['edge-agent']);

    await agent.stop();
    expect(agent.core.state.kind).toBe('stopped');
    expect(kinds(agent.states)).toEqual(['connecting', 'registering', 'ready', 'stopped']);
    expectLegalPath(agent.states);
    await agent.loop;

    // Reopen the cache from disk: the identity and credential are there.
    await cache.closeOnce();
    const reopened = await openCache(dir);
    const identity = await readIdentity(reopened);
    expect(identity?.clusterId).toBe(clusterId);
    expect(identity?.clusterName).toBe('edge-agent');
    expect(identity?.credential).toMatch(/^hwc_/);
    const record = await hub.store.get('ClusterCredential', hashSecret(identity!.credential!));
    expect(record).toMatchObject({ clusterId, clusterName: 'edge-agent' });
  });

  it('heartbeats on the interval the hub asks for and records the round trip', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { clusterLeaseDurationMs: 9_000, clusterStatusUpdateFrequencyMs: 60_000 });
    const rtts: number[] = [];
    agent.core.on('rtt', (ms) => rtts.push(ms));
    await waitFor('the agent to be ready', () => agent.core.state.kind === 'ready');
    // The first tick sends a lease renewal at once and the cluster status as soon as it is read.
    await waitFor('the first status to reach the hub', async () => {
      const c = await hub.store.get('ManagedCluster', 'edge-agent');
      return c && readyCondition(c)?.status === 'True';
    });
    await settle();
    expect(rtts.length).toBeGreaterThanOrEqual(1);
    const lastBeat = async () => metricValue(hub.metrics, 'hawser_cluster_last_heartbeat_timestamp_seconds', { cluster: 'edge-agent' });

    // The hub asks for one beat per lease/3 = 3 s; nothing is sent before that.
    const before = rtts.length;
    hub.clock.advance(2_999);
    await settle();
    expect(rtts.length).toBe(before);
    hub.clock.advance(1);
    await waitFor('a heartbeat after 3 s', () => rtts.length > before);
    expect(await lastBeat()).toBe(hub.clock.now() / 1000);
    expect(agent.core.lastRttMs).toBe(0); // the manual clock did not move during the round trip
    expect(agent.core.state.kind).toBe('ready');
  });

  it('backs off with delays drawn from the policy when the hub goes away', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const draws = [0.5, 0.75, 0.999, 0.25, 0.1, 0];
    const source = replay(draws);
    const agent = await startAgent(hub, cache, source.random);
    await waitFor('the agent to be ready', () => agent.core.state.kind === 'ready');
    expect(source.used()).toBe(0);

    await hub.core.stop();
    await waitFor('the first backoff', () => backingOff(agent.states).length === 1);
    const first = backingOff(agent.states)[0]!;
    expect(first.reason.code).toBe(ErrorCode.HubShuttingDown);
    expect(first.delayMs).toBe(Math.floor(draws[0]! * backoffCeilingMs(policy, 0)));

    for (let attempt = 1; attempt < draws.length; attempt++) {
      const previous = backingOff(agent.states)[attempt - 1]!;
      const seen = agent.states.length;
      // One millisecond short of the delay, the agent must still be waiting.
      if (previous.delayMs > 0) {
        hub.clock.advance(previous.delayMs - 1);
        await settle();
        expect(agent.states.length).toBe(seen);
        expect(agent.core.state.kind).toBe('backing-off');
        hub.clock.advance(1);
      } else {
        hub.clock.advance(0);
      }
      await waitFor(`backoff number ${attempt + 1}`, () => backingOff(agent.states).length === attempt + 1);
      const next = backingOff(agent.states)[attempt]!;
      expect(next.delayMs).toBe(Math.floor(draws[attempt]! * backoffCeilingMs(policy, attempt)));
      expect(next.delayMs).toBeLessThan(backoffCeilingMs(policy, attempt));
      expect(next.reason.code).toBe(ErrorCode.Unavailable);
    }
    expect(backingOff(agent.states).map((s) => s.delayMs)).toEqual([500, 1_500, 3_996, 1_250, 500, 0]);
    expect(source.used()).toBe(draws.length);
    // Each redial is a new connecting state with a growing attempt number.
    const attempts = agent.states.filter((s) => s.kind === 'connecting').map((s) => (s as { attempt: number }).attempt);
    expect(attempts).toEqual([0, 1, 2, 3, 4, 5]);
    expectLegalPath(agent.states);
    expect(agent.core.lastError?.code).toBe(ErrorCode.Unavailable);

    // stop() during a backoff ends the loop at once.
    await agent.stop();
    expect(agent.core.state.kind).toBe('stopped');
  });

  it('backs off on a wrong bootstrap token, keeping its identity without a credential', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { bootstrapToken: 'wrong0.0000000000000000' });
    await waitFor('a refusal', () => backingOff(agent.states).length === 1);
    const refused = backingOff(agent.states)[0]!;
    expect(refused.reason.code).toBe(ErrorCode.BadBootstrapToken);
    expect(refused.delayMs).toBe(Math.floor(0.5 * backoffCeilingMs(policy, 0)));
    expect(kinds(agent.states)).toEqual(['connecting', 'registering', 'backing-off']);
    expect((await hub.store.list('ManagedCluster')).items).toEqual([]);
    // The identity is kept, with no credential.
    const identity = await readIdentity(cache);
    expect(identity?.clusterId).toBe(agent.core.clusterId);
    expect(identity?.credential).toBeUndefined();
  });

  it('does not dial without a credential or a bootstrap token', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { bootstrapToken: undefined });
    await waitFor('a refusal', () => backingOff(agent.states).length === 1);
    expect(kinds(agent.states)).toEqual(['connecting', 'backing-off']);
    expect(backingOff(agent.states)[0]!.reason.code).toBe(ErrorCode.BadBootstrapToken);
    expect(await metricValue(hub.metrics, 'hawser_hub_sessions_total', { cluster: 'edge-agent' })).toBe(0);
    // Not even a stream was opened (one left open would hang on the hub until its hello timeout).
    await settle();
    expect(await metricValue(hub.metrics, 'hawser_hub_connected_agents')).toBe(0);
    expect(await rejectedCount(hub.metrics, ErrorCode.RegistrationTimeout)).toBe(0);
    hub.clock.advance(15_000);
    await settle();
    expect(await rejectedCount(hub.metrics, ErrorCode.RegistrationTimeout)).toBe(0);
  });

  it('waits in registering while the hub holds the request, and is ready once approved', async () => {
    const hub = await hubFixture({ autoApprove: false });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache);
    await waitFor('the pending notice', () => agent.states.some((s) => s.kind === 'registering' && s.pendingRequest));
    // The register timeout no longer applies once the hub said the request is pending.
    hub.clock.advance(10 * 10_000);
    await settle();
    expect(agent.core.state.kind).toBe('registering');

    await hub.core.registrar.approve('edge-agent', 'tester');
    await waitFor('the agent to be ready', () => agent.core.state.kind === 'ready');
    expect(kinds(agent.states)).toEqual(['connecting', 'registering', 'registering', 'ready']);
    expect(agent.states[2]).toEqual({ kind: 'registering', pendingRequest: `hawser-${agent.core.clusterId}` });
    expect((await readIdentity(cache))?.credential).toMatch(/^hwc_/);
  });

  it('rejoins as the same cluster after a restart with the same cache, without a second registration', async () => {
    const hub = await hubFixture();
    const dir = await cacheDir();
    const cache1 = await openCache(dir);
    const first = await startAgent(hub, cache1);
    await waitFor('the first agent to be ready', () => first.core.state.kind === 'ready');
    const clusterId = first.core.clusterId;
    const credential = (await readIdentity(cache1))?.credential;
    expect(credential).toBeDefined();
    await first.stop();
    await cache1.closeOnce();
    await waitFor('the hub to see the agent go', () => hub.core.connectedClusters.length === 0);

    const cache2 = await openCache(dir);
    const second = await startAgent(hub, cache2);
    await waitFor('the restarted agent to be ready', () => second.core.state.kind === 'ready');
    expect(second.core.clusterId).toBe(clusterId);
    expect(kinds(second.states)).toEqual(['connecting', 'registering', 'ready']);

    expect((await hub.store.list('ClusterRegistrationRequest')).items).toHaveLength(1);
    expect((await hub.store.list('ManagedCluster')).items).toHaveLength(1);
    expect((await hub.store.list('ClusterCredential')).items).toHaveLength(1);
    expect(await metricValue(hub.metrics, 'hawser_hub_registrations_total', { result: 'registered' })).toBe(1);
    expect(await metricValue(hub.metrics, 'hawser_hub_registrations_total', { result: 'reconnected' })).toBe(1);
    expect((await readIdentity(cache2))?.credential).toBe(credential);
  });

  it('registers afresh with the bootstrap token when a new hub does not know its credential', async () => {
    const oldHub = await hubFixture();
    const dir = await cacheDir();
    const cache1 = await openCache(dir);
    const first = await startAgent(oldHub, cache1);
    await waitFor('ready on the old hub', () => first.core.state.kind === 'ready');
    const oldCredential = (await readIdentity(cache1))!.credential;
    await first.stop();
    await cache1.closeOnce();

    // A hub with empty storage that accepts the same bootstrap token.
    const newHub = await hubFixture({ bootstrapTokens: [oldHub.token] }, oldHub);
    const cache2 = await openCache(dir);
    const second = await startAgent(newHub, cache2, () => 0.5, { bootstrapToken: oldHub.token });
    await waitFor('the credential refusal', () => backingOff(second.states).length === 1);
    expect(backingOff(second.states)[0]!.reason.code).toBe(ErrorCode.BadCredential);
    // The refused credential is kept: it is replaced only once a new one is durable.
    expect((await readIdentity(cache2))?.credential).toBe(oldCredential);

    newHub.clock.advance(backingOff(second.states)[0]!.delayMs);
    await waitFor('ready on the new hub', () => second.core.state.kind === 'ready');
    expect(second.core.clusterId).toBe(first.core.clusterId);
    const identity = await readIdentity(cache2);
    expect(identity?.credential).toMatch(/^hwc_/);
    expect(identity?.credential).not.toBe(oldCredential);
    expect(await newHub.store.get('ManagedCluster', 'edge-agent')).toMatchObject({ spec: { clusterId: first.core.clusterId } });
    expectLegalPath(second.states);
  });

  it('renews its credential before it expires: reconnects with a signed hello and stores the new one', async () => {
    const hub = await hubFixture({ credentialTtlMs: 90_000 });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache);
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    const first = (await readIdentity(cache))!;
    expect(first.credentialExpiresAtMs).toBe(hub.clock.now() + 90_000);

    // Two thirds of its life on, the agent ends the session to renew ...
    const renewAt = hub.clock.now() + 60_000;
    while (hub.clock.now() < renewAt) {
      hub.clock.advance(1_000);
      await settle();
    }
    await waitFor('the session ended for renewal', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.reason.message).toContain('renew');
    // ... and the hub renews it on the signed hello of the next session.
    const renewed = await waitFor('the renewed credential stored', async () => {
      if (agent.core.state.kind === 'backing-off') hub.clock.advance(agent.core.state.delayMs);
      const stored = await readIdentity(cache);
      return stored?.credential !== first.credential ? stored : undefined;
    });
    expect(renewed.credential).toMatch(/^hwc_/);
    expect(renewed.credential).not.toBe(first.credential);
    expect(renewed.credentialExpiresAtMs).toBeGreaterThan(first.credentialExpiresAtMs!);
    await waitFor('ready again', () => agent.core.state.kind === 'ready');
    expect(renewed.clusterId).toBe(first.clusterId);
  });

  it('can be stopped before it was started', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const core = new AgentCore(options(hub), {
      transport: hub.transport.client(),
      reader: new StaticClusterReader(clusterStatus('ok')),
      cache,
      identityStore: new IdentityStore(cache.home),
      logger: silentLogger,
      clock: hub.clock,
    });
    await core.stop();
    expect(core.state.kind).toBe('stopped');
  });
});

type HubEnd = HubChannel & { sendRaw(bytes: Uint8Array): void };

/**
 * A stand-in hub on the memory transport whose replies a test scripts, for
 * behaviour a well-behaved HubCore never shows (silence, garbage, retry-after).
 */
async function scriptedHub(script: (end: HubEnd, frame: ConnectRequest, hub: { heartbeats: number }) => void | Promise<void>) {
  const transport = new MemoryTransport();
  const state = { heartbeats: 0 };
  const channels: HubEnd[] = [];
  const listener = await transport.listen((channel) => {
    const end = channel as HubEnd;
    channels.push(end);
    void (async () => {
      for await (const inbound of end.frames()) {
        if (!inbound.ok) continue;
        if (inbound.frame.frame?.$case === 'heartbeat') state.heartbeats++;
        await script(end, inbound.frame, state);
      }
    })();
  });
  cleanups.push(() => listener.close());
  return { transport, clock: new ManualClock(epoch), token: 'abcdef.0123456789abcdef', channels, state };
}

const welcome = (heartbeatIntervalMs = 1_000): ConnectResponse => ({
  frame: {
    $case: 'welcome',
    value: {
      clusterName: 'scripted',
      dedicatedNamespace: 'hawser-scripted',
      credential: 'hwc_scripted',
      leaseDurationMs: 3 * heartbeatIntervalMs,
      heartbeatIntervalMs,
      credentialExpiresAtUnixMs: 0,
      publicKeyFingerprint: '',
      protocolVersion: 0,
      features: [],
    },
  },
});

const ackAll = async (end: HubEnd, frame: ConnectRequest) => {
  if (frame.frame?.$case === 'hello') await end.send(welcome());
  if (frame.frame?.$case === 'heartbeat') {
    await end.send({ frame: { $case: 'heartbeatAck', value: { sequence: frame.frame.value.sequence, leaseExpiresAtUnixMs: 0 } } });
  }
};

describe('AgentCore against a scripted hub', () => {
  it('gives up a link whose heartbeats go unanswered for missedHeartbeatLimit intervals', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case === 'hello') await end.send(welcome(1_000));
    });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { missedHeartbeatLimit: 3 });
    await waitFor('ready', () => agent.core.state.kind === 'ready');

    // Silence of exactly 3 intervals is tolerated (the agent keeps beating); the check one interval later fails.
    for (let i = 1; i <= 3; i++) {
      const seen = hub.state.heartbeats;
      hub.clock.advance(1_000);
      await waitFor(`unanswered heartbeat ${i}`, () => hub.state.heartbeats === seen + 1);
      expect(agent.core.state.kind).toBe('ready');
    }
    hub.clock.advance(999);
    await settle();
    expect(agent.core.state.kind).toBe('ready');
    hub.clock.advance(1);
    await waitFor('the heartbeat watchdog', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.reason.code).toBe(ErrorCode.HeartbeatTimeout);
    expect(hub.channels[0]!.bytesIn).toBeGreaterThan(0);
    let hubSideClosed = false;
    void hub.channels[0]!.closed.then(() => (hubSideClosed = true));
    await waitFor('the stream to close on the hub side too', () => hubSideClosed);
  });

  it('keeps a link whose heartbeats are answered', async () => {
    const hub = await scriptedHub(ackAll);
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { missedHeartbeatLimit: 3 });
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    for (let i = 0; i < 20; i++) {
      const seen = hub.state.heartbeats;
      hub.clock.advance(1_000);
      await waitFor('the next heartbeat', () => hub.state.heartbeats > seen);
      await settle();
    }
    expect(agent.core.state.kind).toBe('ready');
    expect(backingOff(agent.states)).toEqual([]);
  });

  it('sends one heartbeat per interval; an unchanged status goes as a flag, a full one every tenth period', async () => {
    const kinds: string[] = [];
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case === 'heartbeat') {
        const hb = frame.frame.value;
        kinds.push(hb.status ? 'full' : hb.statusUnchanged ? 'unchanged' : 'lease');
      }
      await ackAll(end, frame);
    });
    const cache = await openCache(await cacheDir());
    // Interval 1 s (from the welcome); status every 2 s; the static reader never changes.
    const agent = await startAgent(hub, cache, () => 0.5, { clusterStatusUpdateFrequencyMs: 2_000 });
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    await waitFor('the first heartbeat', () => kinds.length === 1);
    for (let i = 0; i < 22; i++) {
      hub.clock.advance(1_000);
      await waitFor(`heartbeat ${i + 2}`, () => kinds.length >= i + 2);
      await settle();
    }
    // One heartbeat per tick: a status read does not add a beat of its own.
    expect(kinds.length).toBe(23);
    const statusTicks = kinds.filter((_, i) => i % 2 === 0);
    expect(kinds.filter((_, i) => i % 2 === 1).every((k) => k === 'lease')).toBe(true);
    // Full at the start and again after ten status periods (20 s); unchanged in between.
    expect(statusTicks).toEqual(['full', ...Array(9).fill('unchanged'), 'full', 'unchanged']);
  });

  it('waits at least the retry-after the hub asks for', async () => {
    const hub = await scriptedHub(async (end) => {
      await end.send({ frame: { $case: 'goodbye', value: { code: ErrorCode.HubShuttingDown, message: 'restarting', retryAfterMs: 4_000 } } });
      end.close();
    });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5);
    await waitFor('the goodbye', () => backingOff(agent.states).length === 1);
    const off = backingOff(agent.states)[0]!;
    expect(off.delayMs).toBe(4_000);
    expect(off.reason.code).toBe(ErrorCode.HubShuttingDown);
    expect(off.reason.retryAfterMs).toBe(4_000);

    hub.clock.advance(3_999);
    await settle();
    expect(hub.channels).toHaveLength(1);
    hub.clock.advance(1);
    await waitFor('the redial', () => hub.channels.length === 2);
  });

  it('waits no longer than the backoff cap, and not 1 ms, for a retry-after over the timer limit', async () => {
    const hub = await scriptedHub(async (end) => {
      await end.send({ frame: { $case: 'goodbye', value: { code: ErrorCode.HubShuttingDown, message: 'restarting', retryAfterMs: 2 ** 31 } } });
      end.close();
    });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5);
    await waitFor('the goodbye', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.delayMs).toBe(policy.capMs);
    hub.clock.advance(policy.capMs - 1);
    await settle();
    expect(hub.channels).toHaveLength(1);
    hub.clock.advance(1);
    await waitFor('the redial', () => hub.channels.length === 2);
  });

  it('maps a goodbye code it does not know to HAWSER_UNAVAILABLE', async () => {
    const hub = await scriptedHub(async (end) => {
      await end.send({ frame: { $case: 'goodbye', value: { code: 'SOMETHING_NEW', message: 'from the future', retryAfterMs: 0 } } });
      end.close();
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    await waitFor('the goodbye', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.reason.code).toBe(ErrorCode.Unavailable);
  });

  it('drops the stream when the hub sends garbage', async () => {
    const hub = await scriptedHub((end) => end.sendRaw(Uint8Array.from([0x0a, 0x05, 0x01])));
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    await waitFor('the malformed frame', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.reason.code).toBe(ErrorCode.MalformedFrame);
    expect(kinds(agent.states)).toEqual(['connecting', 'registering', 'backing-off']);
  });

  it('gives up a dial the hub never answers after registerTimeoutMs', async () => {
    const hub = await scriptedHub(() => {});
    const agent = await startAgent(hub, await openCache(await cacheDir()), () => 0.5, { registerTimeoutMs: 5_000 });
    await waitFor('the hello', () => hub.channels.length === 1 && agent.core.state.kind === 'registering');
    hub.clock.advance(4_999);
    await settle();
    expect(agent.core.state.kind).toBe('registering');
    hub.clock.advance(1);
    await waitFor('the register timeout', () => backingOff(agent.states).length === 1);
    expect(backingOff(agent.states)[0]!.reason.code).toBe(ErrorCode.RegistrationTimeout);
  });

  it('resets the backoff only after a connection stayed up for stableAfterMs', async () => {
    const hub = await scriptedHub(ackAll);
    const agent = await startAgent(hub, await openCache(await cacheDir()), () => 0.5);
    const connected = async (n: number) => {
      await waitFor(`connection ${n}`, () => hub.channels.length === n && agent.core.state.kind === 'ready');
    };
    const dropAndReadDelay = async (n: number) => {
      hub.channels[n - 1]!.close();
      await waitFor(`backoff ${n}`, () => backingOff(agent.states).length === n);
      return backingOff(agent.states)[n - 1]!.delayMs;
    };
    const keepUp = async (ms: number) => {
      for (let t = 0; t < ms; t += 1_000) {
        const seen = hub.state.heartbeats;
        hub.clock.advance(1_000);
        await waitFor('a heartbeat', () => hub.state.heartbeats > seen);
        await settle();
      }
    };

    await connected(1);
    await keepUp(1_000);
    const d1 = await dropAndReadDelay(1); // short connection: attempt 0
    expect(d1).toBe(Math.floor(0.5 * backoffCeilingMs(policy, 0)));
    hub.clock.advance(d1);

    await connected(2);
    const d2 = await dropAndReadDelay(2); // short again: attempt 1
    expect(d2).toBe(Math.floor(0.5 * backoffCeilingMs(policy, 1)));
    hub.clock.advance(d2);

    await connected(3);
    await keepUp(policy.stableAfterMs); // stable: the next delay starts over
    const d3 = await dropAndReadDelay(3);
    expect(d3).toBe(Math.floor(0.5 * backoffCeilingMs(policy, 0)));
    expect(agent.core.state.kind).toBe('backing-off');
  });
});

describe('AgentCore quick retry after a healthy connection', () => {
  it('redials quickly after a connection whose heartbeat was acked, and backs off after one that was not', async () => {
    let acking = true;
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case === 'hello') await end.send(welcome());
      if (frame.frame?.$case === 'heartbeat' && acking) {
        await end.send({ frame: { $case: 'heartbeatAck', value: { sequence: frame.frame.value.sequence, leaseExpiresAtUnixMs: 0 } } });
      }
    });
    const quick: BackoffPolicy = { ...policy, quickRetryMs: 1_500 };
    const agent = await startAgent(hub, await openCache(await cacheDir()), () => 0.5, { backoff: quick });
    let acks = 0;
    agent.core.on('rtt', () => acks++);
    const connected = (n: number) => waitFor(`connection ${n}`, () => hub.channels.length === n && agent.core.state.kind === 'ready');
    const dropAndReadDelay = async (n: number) => {
      hub.channels[n - 1]!.close();
      await waitFor(`backoff ${n}`, () => backingOff(agent.states).length === n);
      return backingOff(agent.states)[n - 1]!.delayMs;
    };
    const redial = async (n: number) => hub.clock.advance(await dropAndReadDelay(n));

    // Healthy (an ack arrived): one quick retry, jittered over the window.
    await connected(1);
    await waitFor('an ack', () => acks === 1);
    const first = await dropAndReadDelay(1);
    expect(first).toBe(Math.floor(0.5 * 1_500));
    hub.clock.advance(first);

    // Welcomed but no ack before the drop: a failed dial, backing off from the first step
    // (the healthy connection before it forgot earlier failures), then growing.
    acking = false;
    await connected(2);
    await redial(2);
    await connected(3);
    await redial(3);
    expect(backingOff(agent.states).slice(1, 3).map((s) => s.delayMs)).toEqual([
      Math.floor(0.5 * backoffCeilingMs(quick, 0)),
      Math.floor(0.5 * backoffCeilingMs(quick, 1)),
    ]);

    // Healthy again: quick again, however many drops came before.
    acking = true;
    await connected(4);
    await waitFor('an ack', () => acks === 2);
    expect(await dropAndReadDelay(4)).toBe(Math.floor(0.5 * 1_500));
    expect(acks).toBe(2);
  });
});

describe('AgentCore stop during a dial', () => {
  it('stop() right as a backoff ends (the next dial not yet open) still ends the loop', async () => {
    const hub = await scriptedHub(ackAll);
    const agent = await startAgent(hub, await openCache(await cacheDir()), () => 0.5);
    await waitFor('ready', () => hub.channels.length === 1 && agent.core.state.kind === 'ready');
    hub.channels[0]!.close();
    await waitFor('backing off', () => backingOff(agent.states).length === 1);
    // stop() lands as the next dial begins, before its stream exists (nothing to interrupt yet).
    let stopped: Promise<void> | undefined;
    agent.core.on('state', (state) => {
      if (state.kind === 'connecting' && state.attempt === 1) stopped = agent.stop();
    });
    hub.clock.advance(backingOff(agent.states)[0]!.delayMs);
    await waitFor('stop() called', () => stopped !== undefined);
    await stopped;
    await agent.loop;
    expect(agent.core.state.kind).toBe('stopped');
  });
});

describe('AgentCore sessions', () => {
  it('sends the revision and hub incarnation its cache holds in the hello, read at each hello', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    await writeSyncState(cache, { hubIncarnation: 'hub-incarnation-1', lastAckedRevision: 42 });
    const agent = await startAgent(hub, cache);
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    expect(hub.core.session('edge-agent')?.resume).toEqual({ hubIncarnation: 'hub-incarnation-1', lastAckedRevision: 42 });

  });

  it('reads the sync state again for every hello, also on a reconnect of the same agent', async () => {
    const hellos: Array<[string, number]> = [];
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case === 'hello') hellos.push([frame.frame.value.hubIncarnation, frame.frame.value.lastAckedRevision]);
      await ackAll(end, frame);
    });
    const cache = await openCache(await cacheDir());
    await writeSyncState(cache, { hubIncarnation: 'inc-a', lastAckedRevision: 42 });
    const agent = await startAgent(hub, cache);
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    // Sync stored more while connected; the link drops; the next hello says so.
    await writeSyncState(cache, { hubIncarnation: 'inc-a', lastAckedRevision: 43 });
    hub.channels[0]!.close();
    await waitFor('the backoff', () => backingOff(agent.states).length === 1);
    hub.clock.advance(backingOff(agent.states)[0]!.delayMs);
    await waitFor('the second hello', () => hellos.length === 2);
    expect(hellos).toEqual([
      ['inc-a', 42],
      ['inc-a', 43],
    ]);
  });

  it('says it has nothing when its cache holds no sync state, or a malformed one', async () => {
    const hub = await hubFixture();
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache);
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    expect(hub.core.session('edge-agent')?.resume).toEqual({ hubIncarnation: '', lastAckedRevision: 0 });
    await agent.stop();

    await cache.put(syncStateCacheKey, { hubIncarnation: 7, lastAckedRevision: -1 });
    const again = await startAgent(hub, cache);
    await waitFor('ready', () => again.core.state.kind === 'ready');
    expect(hub.core.session('edge-agent')?.resume).toEqual({ hubIncarnation: '', lastAckedRevision: 0 });
  });

  it('records the protocol and features it negotiated with the hub on its session, as the hub does on its own', async () => {
    const hub = await hubFixture({ features: [Feature.Sync, Feature.Chunks] });
    const cache = await openCache(await cacheDir());
    const agent = await startAgent(hub, cache, () => 0.5, { features: [Feature.Sync, Feature.ProxyStreams] });
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    const mine = agent.core.session!.negotiated;
    expect(mine.protocolVersion).toBe(protocolVersion);
    expect([...mine.features]).toEqual([Feature.Sync]);
    expect([...hub.core.session('edge-agent')!.negotiated.features]).toEqual([Feature.Sync]);
    await agent.stop();
    expect(agent.core.session).toBeUndefined();
  });

  it('refuses a hub that chose a protocol it does not speak, retrying only at the backoff cap', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case !== 'hello') return;
      const w = welcome();
      if (w.frame?.$case === 'welcome') w.frame.value.protocolVersion = protocolVersion + 1;
      await end.send(w);
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()), () => 0.5);
    await waitFor('the refusal', () => backingOff(agent.states).length === 1);
    const off = backingOff(agent.states)[0]!;
    expect(off.reason.code).toBe(ErrorCode.ProtocolIncompatible);
    expect(off.reason.message).toContain('upgrade the agent');
    expect(off.delayMs).toBe(policy.capMs);
    expect(readyState(agent.states)).toBeUndefined();
  });

  it('logs and counts a frame kind nothing handles, and stays connected', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      await ackAll(end, frame);
      if (frame.frame?.$case === 'hello') await end.send({ frame: { $case: 'registrationPending', value: { requestName: 'late', message: 'after the welcome' } } });
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    await waitFor('the frame counted', () => agent.core.unhandledFrames.get('registrationPending') === 1);
    const seen = hub.state.heartbeats;
    hub.clock.advance(1_000);
    await waitFor('the next heartbeat', () => hub.state.heartbeats > seen);
    expect(agent.core.state.kind).toBe('ready');
    expect(backingOff(agent.states)).toEqual([]);
  });

  it('counts a frame that means nothing before the welcome, and still registers', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      if (frame.frame?.$case === 'hello') await end.send({ frame: { $case: 'heartbeatAck', value: { sequence: 7, leaseExpiresAtUnixMs: 0 } } });
      await ackAll(end, frame);
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    await waitFor('ready', () => agent.core.state.kind === 'ready');
    expect(agent.core.unhandledFrames.get('heartbeatAck')).toBe(1);
  });

  it('tells a handler its session ended, so a session with work in hand still ends', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      await ackAll(end, frame);
      if (frame.frame?.$case === 'hello') await end.send({ frame: { $case: 'registrationPending', value: { requestName: 'x', message: 'stand-in for a sync frame' } } });
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    let started = false;
    agent.core.registerHandler((session) => ({
      name: 'sync',
      kinds: ['registrationPending'],
      queueLimit: 4,
      handle: () =>
        new Promise<void>((resolve) => {
          started = true;
          session.ended.addEventListener('abort', () => resolve());
        }),
    }));
    await waitFor('the work to start', () => started);
    hub.channels[0]!.close();
    await waitFor('the session to end', () => backingOff(agent.states).length === 1);
  });

  it('ends the session with a code when a registered handler fails, and reconnects', async () => {
    const hub = await scriptedHub(async (end, frame) => {
      await ackAll(end, frame);
      if (frame.frame?.$case === 'hello') await end.send({ frame: { $case: 'registrationPending', value: { requestName: 'x', message: 'stand-in for a sync frame' } } });
    });
    const agent = await startAgent(hub, await openCache(await cacheDir()));
    const sessions: string[] = [];
    agent.core.registerHandler((session) => {
      sessions.push(session.clusterName);
      return {
        name: 'sync',
        kinds: ['registrationPending'],
        queueLimit: 4,
        handle: () => {
          throw new Error('cannot apply the manifest');
        },
      };
    });
    await waitFor('the failed session', () => backingOff(agent.states).length === 1);
    const reason = backingOff(agent.states)[0]!.reason;
    expect(reason.code).toBe(ErrorCode.HandlerFailed);
    expect(reason.message).toContain('sync handler failed');
    expect(sessions).toEqual(['scripted']);
    hub.clock.advance(backingOff(agent.states)[0]!.delayMs);
    await waitFor('the redial', () => hub.channels.length === 2);
  });
});

describe('canTransition', () => {
  const all: AgentStateKind[] = ['idle', 'connecting', 'registering', 'ready', 'backing-off', 'stopped'];

  it('allows the normal life of a connection', () => {
    const path: AgentStateKind[] = ['idle', 'connecting', 'registering', 'registering', 'ready', 'backing-off', 'connecting', 'backing-off', 'connecting', 'stopped'];
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} -> ${path[i]}`).toBe(true);
  });

  it.each([
    ['idle', 'ready'],
    ['idle', 'registering'],
    ['idle', 'backing-off'],
    ['connecting', 'ready'],
    ['connecting', 'connecting'],
    ['ready', 'connecting'],
    ['ready', 'registering'],
    ['ready', 'ready'],
    ['backing-off', 'ready'],
    ['backing-off', 'registering'],
    ['backing-off', 'backing-off'],
    ['registering', 'connecting'],
    ['registering', 'idle'],
  ] as Array<[AgentStateKind, AgentStateKind]>)('rejects %s -> %s', (from, to) => {
    expect(canTransition(from, to)).toBe(false);
  });

  it('lets every live state stop, and nothing leave stopped or return to idle', () => {
    for (const kind of all) {
      expect(canTransition(kind, 'stopped')).toBe(kind !== 'stopped');
      expect(canTransition('stopped', kind)).toBe(false);
      expect(canTransition(kind, 'idle')).toBe(false);
    }
  });
});

describe('request streams of a session (proxy-streams)', () => {
  async function agentWithEcho(hub: TestHub, features: string[]): Promise<AgentCore> {
    const cache = await openCache(await cacheDir());
    const core = new AgentCore(options(hub, { features }), {
      transport: hub.transport.client(),
      reader: new StaticClusterReader(clusterStatus('ok')),
      cache,
      identityStore: new IdentityStore(cache.home),
      logger: silentLogger,
      clock: hub.clock,
      random: () => 0.5,
    });
    // Answers each OpenStream by opening it and echoing what comes.
    core.registerHandler((session) => ({
      name: 'echo',
      kinds: ['openStream'],
      queueLimit: 8,
      handle: (frame) => {
        if (frame.$case !== 'openStream') return;
        void session.openStream!(frame.value.kind, session.ended, { requestId: frame.value.streamId }).then(async (stream) => {
          for await (const chunk of stream.chunks()) await stream.write(chunk);
          await stream.end();
        }).catch(() => undefined); // a stream the session's end cut off
      },
    }));
    void core.start();
    cleanups.push(once(() => core.stop()));
    await waitFor('ready', () => core.state.kind === 'ready');
    return core;
  }

  it('the hub session opens a stream on the agent\'s connection when both negotiated proxy-streams; it closes with both halves', async () => {
    const hub = await hubFixture({ features: [Feature.Sync, Feature.ProxyStreams] });
    await agentWithEcho(hub, [Feature.Sync, Feature.ProxyStreams]);
    const session = hub.core.session('edge-agent')!;
    const stream = await session.openStream('proxy');
    expect(session.openStreams).toBe(1);
    await stream.write(Buffer.from('round trip'));
    await stream.end();
    const got: Buffer[] = [];
    for await (const chunk of stream.chunks()) got.push(Buffer.from(chunk));
    expect(Buffer.concat(got).toString()).toBe('round trip');
    expect(await stream.closed).toBeUndefined();
    expect(session.openStreams).toBe(0);
  });

  it('an agent that did not negotiate proxy-streams: openStream says so (HAWSER_PROXY_UNSUPPORTED)', async () => {
    const hub = await hubFixture({ features: [Feature.Sync, Feature.ProxyStreams] });
    await agentWithEcho(hub, [Feature.Sync]);
    await expect(hub.core.session('edge-agent')!.openStream('proxy')).rejects.toMatchObject({ code: ErrorCode.ProxyUnsupported });
  });

  it('a session that ends takes its open streams with it (HAWSER_SESSION_ENDED)', async () => {
    const hub = await hubFixture({ features: [Feature.Sync, Feature.ProxyStreams] });
    const agent = await agentWithEcho(hub, [Feature.Sync, Feature.ProxyStreams]);
    const stream = await hub.core.session('edge-agent')!.openStream('proxy');
    await agent.stop();
    expect((await stream.closed)?.code).toMatch(/HAWSER_SESSION_ENDED|HAWSER_CANCELLED/);
  });
});
