import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { SyncMode } from '../api/core.js';
import type { OfflineCache } from '../cache/index.js';
import {
  type AgentChannel,
  type BackoffPolicy,
  type ClientTransport,
  type Clock,
  type HawserError,
  systemClock,
  wire,
} from '../tunnel/index.js';
import { Handshake } from './handshake.js';
import type { HeartbeatTiming } from './heartbeater.js';
import type { AgentIdentity, IdentityStore } from './identity.js';
import type { ClusterReader } from './kube.js';
import { ReconnectLoop } from './reconnect.js';
import type { AgentHandlerFactory, UnhandledFrameCounts } from './router.js';
import { type AgentSession, runSession } from './session.js';
import type { AgentState } from './state.js';
import { readSyncState, type SyncResume } from './sync-state.js';
import type { StoredTrustBundle, TrustStore } from './trust.js';

export interface AgentCoreOptions {
  clusterRegName: string;
  clusterRegNamespace?: string;
  clusterType: string;
  clusterLabels: Record<string, string>;
  clusterSyncMode: SyncMode;
  /** The mode the agent runs (clusterSyncMode with its feature gates applied); default clusterSyncMode. */
  clusterSyncModeInEffect?: SyncMode;
  clusterStatusUpdateFrequencyMs: number;
  clusterLeaseDurationMs: number;
  backoff: BackoffPolicy;
  bootstrapToken?: string;
  /** No welcome (or pending notice) within this long: give up the dial. */
  registerTimeoutMs: number;
  /** Heartbeats unanswered for this many intervals: the link is dead. */
  missedHeartbeatLimit: number;
  /** A heartbeat not acked this long after it went out ends the session (0: only missedHeartbeatLimit). */
  heartbeatAckTimeoutMs?: number;
  agentVersion: string;
  /** Optional protocol features this agent offers (see Feature in src/tunnel); none by default. */
  features?: readonly string[];
}

export interface AgentDeps {
  transport: ClientTransport;
  reader: ClusterReader;
  /** Where the identity record lives (beside the cache). */
  identityStore: IdentityStore;
  /** The LevelDB cache: a legacy identity is migrated from it, and the sync state is read from it at every hello. */
  cache?: OfflineCache;
  /** Corrupt caches quarantined at start: told to the hub in the next hello, which counts them. */
  cacheQuarantines?: number;
  /**
   * Where the hub's trust bundle is kept, and how the next dials come to
   * trust it (with --parent-ca-file); absent, pushed bundles are ignored.
   */
  trust?: { store: TrustStore; apply(caPems: string[]): void };
  logger: Logger;
  clock?: Clock;
  random?: () => number;
  /** What each hello says of sync (state and digest); default: the state in the cache, no digest. */
  syncResume?: () => Promise<SyncResume>;
}

/**
 * The agent's tunnel client: the reconnect loop (ReconnectLoop) dials one
 * session at a time (runSession); the handshake (Handshake) says who the
 * agent is and keeps what a welcome gives; a welcomed session routes the
 * hub's frames to its handlers (heartbeats built in, more by
 * registerHandler). Emits 'state' (AgentState) and 'rtt'; 'error' is never
 * emitted: failures become the backing-off state's reason.
 */
export class AgentCore extends EventEmitter<{ state: [AgentState]; rtt: [number] }> {
  private readonly clock: Clock;
  private readonly handshake: Handshake;
  private readonly loop: ReconnectLoop;
  private readonly handlers: AgentHandlerFactory[] = [];
  private channel: AgentChannel | undefined;
  private current: AgentSession | undefined;
  lastRttMs: number | undefined;
  /** Frames from the hub that no handler took, by kind: logged once per session, counted always. */
  readonly unhandledFrames: UnhandledFrameCounts = new Map();

  constructor(
    readonly options: AgentCoreOptions,
    private readonly deps: AgentDeps,
  ) {
    super();
    this.clock = deps.clock ?? systemClock;
    this.handshake = new Handshake(
      options,
      {
        identityStore: deps.identityStore,
        ...(deps.cache ? { cache: deps.cache } : {}),
        ...(deps.trust ? { trust: deps.trust } : {}),
        logger: deps.logger,
        clock: this.clock,
      },
      deps.cacheQuarantines ?? 0,
    );
    this.loop = new ReconnectLoop(options.backoff, {
      clock: this.clock,
      random: deps.random ?? Math.random,
      logger: deps.logger,
      init: () => this.init(),
      session: (progress) =>
        runSession(
          {
            transport: deps.transport,
            handshake: this.handshake,
            logger: deps.logger,
            clock: this.clock,
            registerTimeoutMs: options.registerTimeoutMs,
            heartbeatTiming: (hubIntervalMs) => this.heartbeatTiming(hubIntervalMs),
            readStatus: (previous) => this.readStatus(previous),
            recordRtt: (ms) => {
              this.recordRtt(ms);
              progress.heartbeatAcked();
            },
            readSyncState: () => (deps.syncResume ? deps.syncResume() : readSyncState(deps.cache, deps.logger)),
            handlers: this.handlers,
            unhandled: this.unhandledFrames,
            onChannel: (channel) => {
              this.channel = channel;
              // stop() before this dial's stream existed found nothing to interrupt.
              if (channel && this.loop.stopping) channel.close();
            },
            onSession: (session) => (this.current = session),
          },
          progress,
        ),
      interrupt: () => this.channel?.close(),
      onState: (state) => this.emit('state', state),
    });
  }

  get state(): AgentState {
    return this.loop.state;
  }

  get clusterId(): string | undefined {
    return this.handshake.identity?.clusterId;
  }

  /** Why the last session ended. */
  get lastError(): HawserError | undefined {
    return this.loop.lastError;
  }

  /** The trust bundle stored durably and in use for dials; undefined before the first. */
  get trustBundle(): StoredTrustBundle | undefined {
    return this.handshake.trustBundle;
  }

  /** The welcomed session (its cluster name and negotiated protocol), while there is one. */
  get session(): AgentSession | undefined {
    return this.current;
  }

  /**
   * Plugs a handler into every session welcomed from now on (sync, proxy
   * control): it gets the frame kinds it names, in its own bounded queue.
   */
  registerHandler(factory: AgentHandlerFactory): void {
    this.handlers.push(factory);
  }

  /** Loads (or creates) the cluster identity; a damaged cache fails here, before any dial. */
  init(): Promise<AgentIdentity> {
    return this.handshake.init();
  }

  /**
   * Damaged cache data was quarantined: the hub hears of it in the next
   * hello, and a session up now ends (the agent redials at once), so that
   * hello asks for the desired state again.
   */
  cacheQuarantined(count: number): void {
    this.handshake.noteQuarantines(count);
    if (this.current) this.channel?.close();
  }

  /** Starts the reconnect loop; calling again returns the same loop. */
  start(): Promise<void> {
    return this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    this.deps.transport.close();
  }

  /** One heartbeat per interval the hub asks for, never rarer than a status period, never more than 20 a second. */
  private heartbeatTiming(hubIntervalMs: number): HeartbeatTiming {
    const o = this.options;
    return {
      intervalMs: Math.max(50, Math.min(hubIntervalMs || o.clusterLeaseDurationMs / 3, o.clusterStatusUpdateFrequencyMs)),
      statusEveryMs: o.clusterStatusUpdateFrequencyMs,
      missedLimit: o.missedHeartbeatLimit,
      ackTimeoutMs: o.heartbeatAckTimeoutMs,
      lastRttMs: this.lastRttMs,
    };
  }

  /** Reads cluster facts; a failing API server becomes failing health fields, not a failed heartbeat. */
  async readStatus(previous: wire.ClusterStatus | undefined): Promise<wire.ClusterStatus> {
    try {
      return await this.deps.reader.read();
    } catch (err) {
      const failed = `failed: ${(err as Error).message}`;
      this.deps.logger.warn({ err: (err as Error).message }, 'cannot read cluster status');
      return {
        k8sVersion: previous?.k8sVersion ?? '',
        platform: previous?.platform ?? '',
        apiServerUrl: previous?.apiServerUrl ?? '',
        healthz: failed,
        livez: failed,
        readyz: failed,
        nodeStatistics: previous?.nodeStatistics,
        allocatable: previous?.allocatable ?? {},
        capacity: previous?.capacity ?? {},
        clusterCidr: previous?.clusterCidr ?? '',
        serviceCidr: previous?.serviceCidr ?? '',
        observedAtUnixMs: this.clock.now(),
      };
    }
  }

  get clockRef(): Clock {
    return this.clock;
  }

  recordRtt(ms: number): void {
    this.lastRttMs = ms;
    this.emit('rtt', ms);
  }
}
