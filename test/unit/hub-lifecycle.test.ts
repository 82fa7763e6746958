import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { readyCondition, registrationRequestName } from '../../src/api/index.js';
import type { ConnectResponse } from '../../src/gen/hawser/v1/tunnel.js';
import { defaultHubCoreOptions, HubCore, type HubCoreOptions } from '../../src/hub/hub.js';
import { HubMetrics } from '../../src/hub/metrics.js';
import { EmbeddedStore, type HubStore, type StoredKind } from '../../src/hub/store.js';
import { generateBootstrapToken } from '../../src/hub/tokens.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { MemoryTransport } from '../../src/tunnel/memory.js';
import type { HubChannel, ServerTransport, TunnelListener } from '../../src/tunnel/transport.js';
import { clusterStatus, epoch, FakeAgent, helloFrame, metricValue, rejectedCount, settle, silentLogger, type TestHub, tempDir, waitFor } from './support.js';

// Races between an agent, an operator and the hub's own lifecycle, made
// deterministic with gates: a store write or a frame held until the test lets
// it go, as a slow disk or a slow link would hold it.

class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((r) => (this.release = r));
  reached = false;
  open(): void {
    this.release();
  }
}

/** A real store whose writes of one kind wait at a gate. */
class GatedStore implements HubStore {
  gate: Gate | undefined;
  /** Writes of the gated kind, counted whether or not a gate held them. */
  gatedPuts = 0;
  constructor(
    private readonly inner: HubStore,
    private readonly gatedKind: StoredKind,
  ) {}
  get: HubStore['get'] = (kind, key) => this.inner.get(kind, key);
  read: HubStore['read'] = (kind, key) => this.inner.read(kind, key);
  list: HubStore['list'] = (kind, options) => this.inner.list(kind, options);
  put: HubStore['put'] = async (kind, key, value, options) => {
    const gate = this.gate;
    if (kind === this.gatedKind) this.gatedPuts++;
    if (kind === this.gatedKind && gate) {
      gate.reached = true;
      await gate.opened;
    }
    return this.inner.put(kind, key, value, options);
  };
  delete: HubStore['delete'] = (kind, key, options) => this.inner.delete(kind, key, options);
  batch: HubStore['batch'] = (ops, options) => this.inner.batch(ops, options);
  watch: HubStore['watch'] = (kind, options) => this.inner.watch(kind, options);
  info: HubStore['info'] = () => this.inner.info();
  close: HubStore['close'] = () => this.inner.close();
}

/** The memory transport, with the hub's sends of one frame kind held at a gate (a slow link). */
class GatedTransport implements ServerTransport {
  gate: Gate | undefined;
  constructor(
    readonly memory: MemoryTransport,
    private readonly gatedFrame: NonNullable<ConnectResponse['frame']>['$case'],
  ) {}
  listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener> {
    return this.memory.listen((channel) => {
      const send = channel.send.bind(channel);
      channel.send = async (frame) => {
        const gate = this.gate;
        if (frame.frame?.$case === this.gatedFrame && gate) {
          gate.reached = true;
          // Like the gRPC channel waiting for drain: never past the end of the stream.
          await Promise.race([gate.opened, channel.closed]);
        }
        return send(frame);
      };
      onChannel(channel);
    });
  }
}

let hub: (TestHub & { gatedStore: GatedStore; gatedTransport: GatedTransport }) | undefined;

afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

async function startGatedHub(
  options: Partial<HubCoreOptions>,
  gated: { storeKind: StoredKind; frame: NonNullable<ConnectResponse['frame']>['$case'] },
) {
  const dir = await tempDir('hub');
  const real = await EmbeddedStore.open(dir.path);
  const store = new GatedStore(real, gated.storeKind);
  const metrics = new HubMetrics({ processMetrics: false });
  const clock = new ManualClock(epoch);
  const token = generateBootstrapToken();
  const core = new HubCore({ ...defaultHubCoreOptions, bootstrapTokens: [token], autoApprove: true, ...options }, store, metrics, silentLogger, clock);
  const memory = new MemoryTransport();
  const transport = new GatedTransport(memory, gated.frame);
  await core.start(transport);
  let closed = false;
  hub = {
    core,
    store: real,
    metrics,
    clock,
    transport: memory,
    token,
    gatedStore: store,
    gatedTransport: transport,
    async close() {
      if (closed) return;
      closed = true;
      store.gate?.open();
      transport.gate?.open();
      await core.stop();
      await real.close();
      await dir.remove();
    },
  };
  return hub;
}

describe('HubCore lifecycle races', () => {
  it('an agent that hangs up before its welcome leaves no session and no connected-agents count behind', async () => {
    const h = await startGatedHub({ autoApprove: false }, { storeKind: 'ClusterCredential', frame: 'welcome' });
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: h.token, name: 'edge-phantom' }));
    await agent.expectFrame('registrationPending');
    // Hold the welcome on the wire; the agent gives up while it waits.
    h.gatedTransport.gate = new Gate();
    await h.core.registrar.approve('edge-phantom', 'test');
    await waitFor('the hub to be sending the welcome', () => h.gatedTransport.gate!.reached);
    agent.channel.close();
    await waitFor('the stream to be released', async () => (await metricValue(h.metrics, 'hawser_hub_open_streams')) === 0);
    expect(await metricValue(h.metrics, 'hawser_hub_connected_agents')).toBe(0);
    expect(h.core.connectedClusters).toEqual([]);
  });

  it('an approval that lands while RegistrationPending is still on the wire still reaches the agent', async () => {
    const h = await startGatedHub({ autoApprove: false }, { storeKind: 'ClusterCredential', frame: 'registrationPending' });
    h.gatedTransport.gate = new Gate();
    const clusterId = randomUUID();
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId, token: h.token, name: 'edge-gap' }));
    await waitFor('the hub to be sending RegistrationPending', () => h.gatedTransport.gate!.reached);
    const request = await h.store.get('ClusterRegistrationRequest', registrationRequestName(clusterId));
    expect(request?.status.result).toBe('Pending');
    await h.core.registrar.approve('edge-gap', 'test');
    h.gatedTransport.gate.open();
    await agent.expectFrame('registrationPending');
    expect((await agent.expectFrame('welcome')).clusterName).toBe('edge-gap');
  });

  it('stop() waits for a stream still being served, so the store is never closed under it', async () => {
    const h = await startGatedHub({ autoApprove: true }, { storeKind: 'ClusterCredential', frame: 'welcome' });
    h.gatedStore.gate = new Gate();
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: h.token, name: 'edge-stop' }));
    await waitFor('registration to be writing the credential', () => h.gatedStore.gate!.reached);
    let stopped = false;
    const stopping = h.core.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false);
    h.gatedStore.gate.open();
    await stopping;
    expect(await metricValue(h.metrics, 'hawser_hub_open_streams')).toBe(0);
    expect(await metricValue(h.metrics, 'hawser_hub_connected_agents')).toBe(0);
  });

  it('a refused stream ends with its status even when the peer never takes the Goodbye', async () => {
    const h = await startGatedHub({ goodbyeTimeoutMs: 5_000 }, { storeKind: 'ClusterCredential', frame: 'goodbye' });
    h.gatedTransport.gate = new Gate();
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: 'zzzzzz.zzzzzzzzzzzzzzzz', name: 'edge-deaf' }));
    await waitFor('the hub to be sending the Goodbye', () => h.gatedTransport.gate!.reached);
    h.clock.advance(4_999);
    await settle();
    expect(agent.isClosed).toBe(false);
    h.clock.advance(1);
    const reason = await agent.channel.closed;
    expect(reason?.code).toBe(ErrorCode.BadBootstrapToken);
  });
});

describe('HubCore session routing', () => {
  const heartbeat = (sequence: number, extra: { status?: ReturnType<typeof clusterStatus>; statusUnchanged?: boolean } = {}) => ({
    frame: {
      $case: 'heartbeat' as const,
      value: { sequence, sentAtUnixMs: 0, status: extra.status, lastRttMs: 0, statusUnchanged: extra.statusUnchanged ?? false },
    },
  });

  it('acks heartbeats while the status write waits on a slow store, then writes only the newest status', async () => {
    const h = await startGatedHub({}, { storeKind: 'ManagedCluster', frame: 'goodbye' });
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: h.token, name: 'edge-slow-disk', leaseDurationMs: 30_000 }));
    await agent.expectFrame('welcome');
    await h.core.statusWritesSettled();

    // The disk stalls on the first status write.
    h.gatedStore.gate = new Gate();
    const putsBefore = h.gatedStore.gatedPuts;
    await agent.send(heartbeat(1, { status: clusterStatus('ok') }));
    await waitFor('the status write to be held', () => h.gatedStore.gate!.reached);
    expect((await agent.expectFrame('heartbeatAck')).sequence).toBe(1);

    // Every later heartbeat is acked with a renewed lease while that write still waits.
    for (let sequence = 2; sequence <= 6; sequence++) {
      h.clock.advance(1_000);
      const status = sequence === 5 ? clusterStatus('failed: etcd') : undefined;
      await agent.send(heartbeat(sequence, { status, statusUnchanged: sequence === 6 }));
      const ack = await agent.expectFrame('heartbeatAck');
      expect(ack.sequence).toBe(sequence);
      expect(ack.leaseExpiresAtUnixMs).toBe(h.clock.now() + 30_000);
    }
    expect(h.gatedStore.gatedPuts).toBe(putsBefore + 1);

    h.gatedStore.gate.open();
    await h.core.statusWritesSettled();
    // The held write, then one write of everything that came while it waited, the newest report winning.
    expect(h.gatedStore.gatedPuts).toBe(putsBefore + 2);
    const stored = await h.store.get('ManagedCluster', 'edge-slow-disk');
    expect(stored?.status.readyz).toBe(false);
    expect(readyCondition(stored!)?.status).toBe('False');
    expect(stored?.status.lastObservedTime).toBe(new Date(h.clock.now()).toISOString());
  });

  it('refuses a session whose heartbeats pile up beyond the handler queue with a coded Goodbye', async () => {
    const h = await startGatedHub({ heartbeatQueueLimit: 2 }, { storeKind: 'ClusterCredential', frame: 'heartbeatAck' });
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId: randomUUID(), token: h.token, name: 'edge-deaf-acks' }));
    await agent.expectFrame('welcome');
    // The link takes no acks: one heartbeat is in hand, two wait, the fourth has no room.
    h.gatedTransport.gate = new Gate();
    for (let sequence = 1; sequence <= 4; sequence++) await agent.send(heartbeat(sequence));
    const goodbye = await agent.expectGoodbye(ErrorCode.HandlerOverloaded);
    expect(goodbye.message).toContain('heartbeat handler has 2 heartbeat frames waiting');
    expect(await rejectedCount(h.metrics, ErrorCode.HandlerOverloaded)).toBe(1);
    await waitFor('the session to end', () => h.core.connectedClusters.length === 0);
  });

  // No agent frame besides hello and heartbeat exists yet: a second hello stands in for sync's frames.
  it('gives a registered handler its frame kind in its own queue: held, it holds no heartbeat; failing, it ends the session with a code', async () => {
    const h = await startGatedHub({}, { storeKind: 'ClusterCredential', frame: 'goodbye' });
    const held = new Gate();
    const seen: Array<{ cluster: string; features: string[] }> = [];
    let fail = false;
    h.core.registerHandler((session) => ({
      name: 'sync',
      kinds: ['hello'],
      queueLimit: 4,
      handle: async () => {
        seen.push({ cluster: session.clusterName, features: [...session.negotiated.features] });
        if (fail) throw new Error('cannot store the manifest');
        held.reached = true;
        await held.opened;
      },
    }));
    const clusterId = randomUUID();
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId, token: h.token, name: 'edge-plugged' }));
    const { credential } = await agent.expectFrame('welcome');
    await agent.send(helloFrame({ clusterId, credential }));
    await waitFor('the handler to hold its frame', () => held.reached);
    for (let sequence = 1; sequence <= 3; sequence++) {
      await agent.send(heartbeat(sequence));
      expect((await agent.expectFrame('heartbeatAck')).sequence).toBe(sequence);
    }
    expect(seen).toEqual([{ cluster: 'edge-plugged', features: [] }]);
    held.open();

    fail = true;
    await agent.send(helloFrame({ clusterId, credential }));
    const goodbye = await agent.expectGoodbye(ErrorCode.HandlerFailed);
    expect(goodbye.message).toContain('sync handler failed on a hello frame: cannot store the manifest');
    expect(await rejectedCount(h.metrics, ErrorCode.HandlerFailed)).toBe(1);
  });

  it('tells a handler its session ended, so work in hand stops and the stream is released', async () => {
    const h = await startGatedHub({}, { storeKind: 'ClusterCredential', frame: 'goodbye' });
    let started = false;
    let stopped = false;
    h.core.registerHandler((session) => ({
      name: 'sync',
      kinds: ['hello'],
      queueLimit: 4,
      // Work that only ends when the session does.
      handle: () =>
        new Promise<void>((resolve) => {
          started = true;
          session.ended.addEventListener('abort', () => {
            stopped = true;
            resolve();
          });
        }),
    }));
    const clusterId = randomUUID();
    const agent = FakeAgent.open(h);
    await agent.send(helloFrame({ clusterId, token: h.token, name: 'edge-long-work' }));
    const { credential } = await agent.expectFrame('welcome');
    await agent.send(helloFrame({ clusterId, credential }));
    await waitFor('the work to start', () => started);
    agent.channel.close();
    await waitFor('the stream released', async () => (await metricValue(h.metrics, 'hawser_hub_open_streams')) === 0);
    expect(stopped).toBe(true);
    expect(h.core.connectedClusters).toEqual([]);
  });
});
