// Helpers shared by the unit tests that drive HubCore and AgentCore over the
// in-memory transport. Not a test file itself (vitest picks up *.test.ts).
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import {
  type ClusterStatus,
  type ConnectRequest,
  type Hello,
  type ConnectResponse,
  type HeartbeatAck,
  PayloadEncoding,
  type SyncObject,
  SyncMode,
  SyncOp,
} from '../../src/gen/hawser/v1/tunnel.js';
import type { AgentCoreOptions } from '../../src/agent/agent.js';
import type { Applier, ReconcileInput, ReconcileReport } from '../../src/agent/apply-report.js';
import { defaultHubCoreOptions, HubCore, type HubCoreOptions } from '../../src/hub/hub.js';
import { HubMetrics } from '../../src/hub/metrics.js';
import { EmbeddedStore, type HubStore } from '../../src/hub/store.js';
import { generateBootstrapToken } from '../../src/hub/tokens.js';
import { type AgentKeyPair, generateAgentKeyPair, signHello } from '../../src/tunnel/proof.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { ErrorCode, type HawserError } from '../../src/tunnel/errors.js';
import { MemoryTransport } from '../../src/tunnel/memory.js';
import type { AgentChannel } from '../../src/tunnel/transport.js';
export { seeded } from '../../src/testkit/random.js';


export const silentLogger = pino({ level: 'silent' });

/**
 * Waits until `probe` returns something truthy, polling once per event-loop
 * turn; fails with `what` once the (real-time) deadline passes. Never sleeps
 * a fixed time: it returns on the first turn the condition holds.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  deadlineMs = 10_000,
): Promise<NonNullable<T>> {
  const giveUpAt = performance.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (performance.now() > giveUpAt) throw new Error(`timed out after ${deadlineMs}ms waiting for ${what}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** Lets already-queued I/O and microtasks run for a number of event-loop turns. */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `hawser-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export const epoch = Date.UTC(2025, 0, 1);

export interface TestHub {
  core: HubCore;
  store: EmbeddedStore;
  metrics: HubMetrics;
  clock: ManualClock;
  transport: MemoryTransport;
  token: string;
  close(): Promise<void>;
}

export async function startTestHub(
  options: Partial<HubCoreOptions> = {},
  extra: { maxFrameBytes?: number; clock?: ManualClock; random?: () => number; wrapStore?: (store: HubStore) => HubStore } = {},
): Promise<TestHub> {
  const dir = await tempDir('hub');
  const store = await EmbeddedStore.open(dir.path);
  const metrics = new HubMetrics({ processMetrics: false });
  const clock = extra.clock ?? new ManualClock(epoch);
  signingClock = () => clock.now();
  const token = generateBootstrapToken();
  const core = new HubCore(
    { ...defaultHubCoreOptions, bootstrapTokens: [token], autoApprove: true, ...options },
    extra.wrapStore ? extra.wrapStore(store) : store,
    metrics,
    silentLogger,
    clock,
    extra.random,
  );
  const transport = new MemoryTransport(extra.maxFrameBytes);
  await core.start(transport);
  let closed = false;
  return {
    core,
    store,
    metrics,
    clock,
    transport,
    token,
    async close() {
      if (closed) return;
      closed = true;
      await core.stop();
      await store.close();
      await dir.remove();
    },
  };
}

/** Value of one labelled series of a hub metric (0 when the series does not exist yet). */
export async function metricValue(metrics: HubMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  if (!metric) throw new Error(`no metric named ${name}`);
  const series = metric.values.find((v) =>
    Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want),
  );
  return series?.value ?? 0;
}

export function rejectedCount(metrics: HubMetrics, code: string): Promise<number> {
  return metricValue(metrics, 'hawser_hub_rejected_total', { code });
}

/** Hellos are signed at this time: the clock of the hub the test started last. */
let signingClock: () => number = () => epoch;
/** One key per cluster id, so a test's hellos for one cluster come from one agent unless it says otherwise. */
const keysByCluster = new Map<string, AgentKeyPair>();
export function agentKey(clusterId: string): AgentKeyPair {
  let key = keysByCluster.get(clusterId);
  if (!key) keysByCluster.set(clusterId, (key = generateAgentKeyPair()));
  return key;
}

export interface HelloSpec {
  clusterId: string;
  /** Signing key; default the cluster id's own (agentKey). */
  key?: AgentKeyPair;
  /** Default the test hub's clock. */
  signedAtMs?: number;
  /** No public key and no proof at all. */
  unsigned?: boolean;
  token?: string;
  credential?: string;
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  leaseDurationMs?: number;
  /** Default 0 and []: an agent from before protocol versioning. */
  protocolVersion?: number;
  minProtocolVersion?: number;
  features?: string[];
}

export function helloFrame(spec: HelloSpec): ConnectRequest {
  const auth =
    spec.credential !== undefined
      ? { $case: 'clusterCredential' as const, value: spec.credential }
      : spec.token !== undefined
        ? { $case: 'bootstrapToken' as const, value: spec.token }
        : undefined;
  const name = spec.name ?? 'edge-1';
  const key = spec.key ?? agentKey(spec.clusterId);
  const hello: Hello = {
    clusterId: spec.clusterId,
    auth,
    registration: {
      name,
      namespace: spec.namespace ?? '',
      clusterType: 'EdgeCluster',
      labels: spec.labels ?? {},
      syncMode: SyncMode.SYNC_MODE_DUAL,
    },
    lastAckedRevision: 0,
    leaseDurationMs: spec.leaseDurationMs ?? 0,
    agentVersion: 'unit-test',
    publicKey: Buffer.alloc(0),
    cacheQuarantines: 0,
    protocolVersion: spec.protocolVersion ?? 0,
    minProtocolVersion: spec.minProtocolVersion ?? 0,
    features: spec.features ?? [],
    hubIncarnation: '',
    syncModeInEffect: SyncMode.SYNC_MODE_UNSPECIFIED,
    desiredDigest: '',
  };
  return { frame: { $case: 'hello', value: spec.unsigned ? hello : signHello(hello, key, spec.signedAtMs ?? signingClock()) } };
}

export function clusterStatus(readyz: string): ClusterStatus {
  return {
    k8sVersion: 'v1.33.1',
    platform: 'linux/amd64',
    apiServerUrl: 'https://10.0.0.1:6443',
    healthz: 'ok',
    livez: 'ok',
    readyz,
    nodeStatistics: { readyNodes: 2, notReadyNodes: 1, unknownNodes: 0 },
    allocatable: { cpu: '3500m', memory: '6Gi' },
    capacity: { cpu: '4', memory: '8Gi' },
    clusterCidr: '10.244.0.0/16',
    serviceCidr: '10.96.0.0/12',
    observedAtUnixMs: epoch,
  };
}

type HubFrame = NonNullable<ConnectResponse['frame']>;
export type HubFrameKind = HubFrame['$case'];
export type HubFrameValue<K extends HubFrameKind> = Extract<HubFrame, { $case: K }>['value'];
export type RawAgentChannel = AgentChannel & { sendRaw(bytes: Uint8Array): void };

/** A hand-driven agent: one memory channel, every inbound frame recorded in order. */
export class FakeAgent {
  readonly received: ConnectResponse[] = [];
  readonly inboundErrors: HawserError[] = [];
  ended = false;
  closedWith: HawserError | undefined;
  isClosed = false;
  private cursor = 0;
  private sequence = 0;

  /**
   * `statusStored`: resolves once the hub has stored every status it acked
   * (HubCore.statusWritesSettled). heartbeat() waits for it after the ack,
   * since the ack itself never waits for the store.
   */
  constructor(
    readonly channel: RawAgentChannel,
    private readonly statusStored: () => Promise<void> = async () => {},
  ) {
    void this.pump();
    void channel.closed.then((e) => {
      this.closedWith = e;
      this.isClosed = true;
    });
  }

  static open(hub: TestHub): FakeAgent {
    const channel = hub.transport.client().open() as RawAgentChannel;
    if (typeof channel.sendRaw !== 'function') throw new Error('memory channel lost its sendRaw test hook');
    return new FakeAgent(channel, () => hub.core.statusWritesSettled());
  }

  private async pump(): Promise<void> {
    for await (const inbound of this.channel.frames()) {
      if (inbound.ok) this.received.push(inbound.frame);
      else this.inboundErrors.push(inbound.error);
    }
    this.ended = true;
  }

  send(frame: ConnectRequest): Promise<void> {
    return this.channel.send(frame);
  }

  async next(): Promise<ConnectResponse> {
    await waitFor('a frame from the hub', () => this.cursor < this.received.length || this.ended);
    if (this.cursor >= this.received.length) throw new Error('the hub ended the stream without another frame');
    return this.received[this.cursor++]!;
  }

  async expectFrame<K extends HubFrameKind>(kind: K): Promise<HubFrameValue<K>> {
    const frame = (await this.next()).frame;
    if (frame?.$case !== kind) throw new Error(`expected a ${kind} frame, got ${JSON.stringify(frame)}`);
    return frame.value as HubFrameValue<K>;
  }

  /** Expects a goodbye with `code` and then the stream closing with the same code. */
  async expectGoodbye(code: string): Promise<HubFrameValue<'goodbye'>> {
    const goodbye = await this.expectFrame('goodbye');
    if (goodbye.code !== code) throw new Error(`expected goodbye ${code}, got ${goodbye.code}: ${goodbye.message}`);
    const reason = await this.channel.closed;
    if (reason?.code !== code) throw new Error(`expected the stream to close with ${code}, got ${reason?.code}`);
    await waitFor('the inbound stream to end', () => this.ended);
    return goodbye;
  }

  /** Sends a heartbeat, expects its ack, then waits until the hub has stored what the heartbeat told it. */
  async heartbeat(status?: ClusterStatus, sentAtUnixMs = 0, statusUnchanged = false): Promise<HeartbeatAck> {
    const sequence = ++this.sequence;
    await this.send({ frame: { $case: 'heartbeat', value: { sequence, sentAtUnixMs, status, lastRttMs: 0, statusUnchanged } } });
    const ack = await this.expectFrame('heartbeatAck');
    if (ack.sequence !== sequence) throw new Error(`ack for heartbeat ${ack.sequence}, expected ${sequence}`);
    await this.statusStored();
    return ack;
  }

  /** Frames received but not yet consumed by next(). */
  get unread(): ConnectResponse[] {
    return this.received.slice(this.cursor);
  }
}

/**
 * Options of the one agent, "edge", that the sync tests run against a test
 * hub: sync offered, a lease and a status period far from what the tests'
 * clock moves.
 */
export function edgeAgentOptions(token: string, extra: Partial<AgentCoreOptions> = {}): AgentCoreOptions {
  return {
    clusterRegName: 'edge',
    clusterType: 'EdgeCluster',
    clusterLabels: {},
    clusterSyncMode: 'Pull',
    clusterStatusUpdateFrequencyMs: 10_000,
    clusterLeaseDurationMs: 30_000,
    backoff: { baseMs: 1_000, capMs: 5_000, stableAfterMs: 60_000 },
    bootstrapToken: token,
    registerTimeoutMs: 10_000,
    missedHeartbeatLimit: 3,
    agentVersion: 'unit-test',
    features: [Feature.Sync],
    ...extra,
  };
}

/** The dedicated namespace of the one cluster registered with the test hub. */
export async function clusterNamespace(h: TestHub): Promise<string> {
  return waitFor('the cluster registered', async () => (await h.store.list('ManagedCluster')).items[0]?.object.metadata.namespace);
}

/** A whole (unchunked) upsert of `manifest` as the hub frames it, with its sha256; `over` changes any field. */
export function wholeSyncObject(
  manifest: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [field: string]: unknown },
  over: Partial<SyncObject> = {},
): SyncObject {
  const payload = Buffer.from(JSON.stringify(manifest));
  return {
    key: { apiVersion: manifest.apiVersion, kind: manifest.kind, namespace: manifest.metadata.namespace ?? '', name: manifest.metadata.name },
    subscription: 'default/app',
    revision: 1,
    op: SyncOp.SYNC_OP_UPSERT,
    encoding: PayloadEncoding.PAYLOAD_ENCODING_IDENTITY,
    contentSha256: createHash('sha256').update(payload).digest('hex'),
    totalSize: payload.length,
    chunkIndex: 0,
    chunkCount: 1,
    payload,
    ...over,
  };
}

/**
 * A fake cluster for the sync tests: records what each pass was asked to
 * apply, and reports every object applied (with `status(name)` when given),
 * or an error for the names in `failing`.
 */
export class RecordingApplier implements Applier {
  readonly inputs: ReconcileInput[] = [];
  failing = new Set<string>();
  constructor(private readonly status?: (name: string) => Record<string, unknown>) {}
  reconcile(input: ReconcileInput): Promise<ReconcileReport> {
    this.inputs.push(input);
    return Promise.resolve({
      objects: input.objects.map((d) => {
        const name = d.object.metadata.name ?? '';
        return {
          apiVersion: d.object.apiVersion,
          kind: d.object.kind,
          ...(d.object.metadata.namespace ? { namespace: d.object.metadata.namespace } : {}),
          name,
          subscriptions: [d.subscription],
          ...(this.failing.has(name)
            ? { action: 'error' as const, error: { code: ErrorCode.Unavailable, message: 'API server away' } }
            : { action: 'applied' as const, exists: true, ...(this.status ? { status: this.status(name) } : {}) }),
        };
      }),
      prune: { ran: input.allowPrune, errors: [] },
    });
  }
}
