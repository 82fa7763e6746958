import type { Logger } from 'pino';
import { type ManagedCluster, registrationRequestName } from '../api/index.js';
import {
  type Clock,
  ErrorCode,
  HawserError,
  type HubChannel,
  type Inbound,
  type ServerTransport,
  systemClock,
  toHawserError,
  type TunnelListener,
  wire,
} from '../tunnel/index.js';
import { applyStatusReport, markReachable, markUnreachable, readyValue } from './clusters.js';
import { LeaseTracker } from './leases.js';
import type { HubMetrics } from './metrics.js';
import { KeyedMutex } from './mutex.js';
import { Registrar } from './registration.js';
import type { HubStore } from './store.js';

export interface HubCoreOptions {
  bootstrapTokens: readonly string[];
  autoApprove: boolean;
  /** Lease given to agents that do not ask for one. */
  clusterLeaseDurationMs: number;
  /** Bounds on what an agent may ask for. */
  minLeaseDurationMs: number;
  maxLeaseDurationMs: number;
  /** An agent must say hello within this long. */
  helloTimeoutMs: number;
}

export const defaultHubCoreOptions: HubCoreOptions = {
  bootstrapTokens: [],
  autoApprove: false,
  clusterLeaseDurationMs: 60_000,
  minLeaseDurationMs: 1_000,
  maxLeaseDurationMs: 3_600_000,
  helloTimeoutMs: 15_000,
};

interface Session {
  clusterName: string;
  channel: HubChannel;
  leaseDurationMs: number;
}

/**
 * The hub's protocol logic over any ServerTransport: registration, sessions,
 * heartbeats, leases and taints. Owns its sessions; stop() closes them.
 */
export class HubCore {
  readonly registrar: Registrar;
  private readonly mutex = new KeyedMutex();
  private readonly leases: LeaseTracker;
  private readonly sessions = new Map<string, Session>();
  private readonly leaseDurations = new Map<string, number>();
  private readonly channels = new Set<HubChannel>();
  private readonly serving = new Set<Promise<void>>();
  private listener: TunnelListener | undefined;
  private stopping = false;

  constructor(
    private readonly options: HubCoreOptions,
    private readonly store: HubStore,
    private readonly metrics: HubMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.registrar = new Registrar(store, this.mutex, clock, {
      bootstrapTokens: () => this.options.bootstrapTokens,
      autoApprove: options.autoApprove,
    });
    this.leases = new LeaseTracker(clock, { expired: (name) => void this.onLeaseExpired(name) });
  }

  async start(transport: ServerTransport): Promise<string> {
    // Clusters known from before a restart get one full lease to come back.
    for (const cluster of await this.store.list('ManagedCluster')) {
      const duration = cluster.status.leaseDurationSeconds
        ? cluster.status.leaseDurationSeconds * 1000
        : this.options.clusterLeaseDurationMs;
      this.leaseDurations.set(cluster.metadata.name, duration);
      this.leases.renew(cluster.metadata.name, duration);
      this.metrics.ready.set({ cluster: cluster.metadata.name }, readyValue(cluster));
    }
    this.listener = await transport.listen((channel) => {
      // Owned until it ends: stop() waits for it, so the store never closes under a stream.
      const serving = this.serve(channel).finally(() => this.serving.delete(serving));
      this.serving.add(serving);
    });
    return this.listener.address;
  }

  get connectedClusters(): string[] {
    return [...this.sessions.keys()];
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.leases.stop();
    for (const ch of this.channels) {
      ch.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down'));
    }
    await this.listener?.close();
    await Promise.allSettled([...this.channels].map((c) => c.closed));
    await Promise.allSettled([...this.serving]);
  }

  private async refuse(channel: HubChannel, error: HawserError, context: Record<string, unknown> = {}): Promise<void> {
    this.metrics.rejected.inc({ code: error.code });
    this.logger.warn({ code: error.code, peer: channel.peer, ...context }, error.message);
    try {
      await channel.send({ frame: { $case: 'goodbye', value: { code: error.code, message: error.message, retryAfterMs: error.retryAfterMs } } });
    } catch {
      // The peer may already be gone; the close below still records the reason.
    }
    channel.close(error);
  }

  private async serve(channel: HubChannel): Promise<void> {
    if (this.stopping) {
      channel.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down'));
      return;
    }
    this.channels.add(channel);
    this.metrics.openStreams.inc();
    const iterator = channel.frames()[Symbol.asyncIterator]();
    let session: Session | undefined;
    let countedOut = 0;
    const countOut = () => {
      this.metrics.bytes.inc({ direction: 'out' }, channel.bytesOut - countedOut);
      countedOut = channel.bytesOut;
    };
    try {
      const first = await this.firstFrame(channel, iterator);
      if (!first) return;
      if (!first.ok) return await this.refuse(channel, first.error);
      if (first.frame.frame?.$case !== 'hello') {
        return await this.refuse(channel, new HawserError(ErrorCode.UnexpectedFrame, `first frame must be hello, got ${first.frame.frame?.$case}`));
      }
      const hello = first.frame.frame.value;
      session = await this.establish(channel, hello);
      if (!session) return;
      await this.renewLease(session, { refresh: true });
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        const inbound = next.value;
        this.metrics.bytes.inc({ direction: 'in' }, inbound.bytes);
        if (!inbound.ok) return await this.refuse(channel, inbound.error, { cluster: session.clusterName });
        const frame = inbound.frame.frame;
        if (frame?.$case === 'heartbeat') {
          await this.onHeartbeat(session, frame.value);
          countOut();
        } else {
          return await this.refuse(
            channel,
            new HawserError(ErrorCode.UnexpectedFrame, `unexpected ${frame?.$case} frame after registration`),
            { cluster: session.clusterName },
          );
        }
      }
    } catch (err) {
      const error = toHawserError(err);
      if (error.code === ErrorCode.Internal) this.logger.error({ err, peer: channel.peer }, 'session failed');
      channel.close(error);
    } finally {
      countOut();
      this.channels.delete(channel);
      this.metrics.openStreams.dec();
      if (session) this.metrics.connectedAgents.dec();
      if (session && this.sessions.get(session.clusterName) === session) this.sessions.delete(session.clusterName);
      if (session) this.logger.info({ cluster: session.clusterName, peer: channel.peer }, 'agent disconnected');
    }
  }

  private async firstFrame(
    channel: HubChannel,
    iterator: AsyncIterator<Inbound<wire.ConnectRequest>>,
  ): Promise<Inbound<wire.ConnectRequest> | undefined> {
    const timer = this.clock.setTimeout(
      () => void this.refuse(channel, new HawserError(ErrorCode.RegistrationTimeout, `no hello within ${this.options.helloTimeoutMs}ms`)),
      this.options.helloTimeoutMs,
    );
    try {
      const r = await iterator.next();
      if (r.done) return undefined;
      this.metrics.bytes.inc({ direction: 'in' }, r.value.bytes);
      return r.value;
    } finally {
      timer.cancel();
    }
  }

  /** Authenticates and registers; returns the live session, or undefined if refused or abandoned. */
  private async establish(channel: HubChannel, hello: wire.Hello): Promise<Session | undefined> {
    let admission;
    // Listen for approval before anything can make the request pending: an
    // approve that lands while RegistrationPending is on the wire must not be lost.
    const requestName = registrationRequestName(hello.clusterId);
    const done = new AbortController();
    void channel.closed.then(() => done.abort());
    const approved = this.registrar.waitForApproval(requestName, done.signal);
    try {
      admission = await this.registrar.admit(hello);
      if (admission.kind === 'pending') {
        this.metrics.registrations.inc({ result: 'pending' });
        this.logger.info({ request: requestName, peer: channel.peer }, 'registration waits for approval');
        await channel.send({
          frame: {
            $case: 'registrationPending',
            value: { requestName, message: `waiting for an operator to run: hawser approve ${admission.request.spec.clusterName}` },
          },
        });
        if (!(await approved)) return undefined;
        admission = await this.registrar.admit(hello);
        if (admission.kind === 'pending') throw new HawserError(ErrorCode.Internal, `request ${requestName} approved but still pending`);
      }
    } catch (err) {
      const error = toHawserError(err);
      if (error.code === ErrorCode.Internal) throw err;
      this.metrics.registrations.inc({ result: 'refused' });
      await this.refuse(channel, error, { clusterId: hello.clusterId });
      return undefined;
    } finally {
      done.abort();
    }

    const cluster = admission.cluster;
    const name = cluster.metadata.name;
    const leaseDurationMs = this.leaseDurationFor(hello);
    // Welcome first, record after: a stream that ends before its welcome went out
    // must leave no session and no connected-agents count behind. Nothing awaits
    // between recording and returning, so serve() always cleans up what was recorded.
    await channel.send({
      frame: {
        $case: 'welcome',
        value: {
          clusterName: name,
          dedicatedNamespace: cluster.metadata.namespace ?? '',
          credential: admission.credential ?? '',
          leaseDurationMs,
          heartbeatIntervalMs: Math.max(100, Math.floor(leaseDurationMs / 3)),
        },
      },
    });
    const session: Session = { clusterName: name, channel, leaseDurationMs };
    const previous = this.sessions.get(name);
    this.sessions.set(name, session);
    if (previous) {
      // The newest stream wins: the old one is a half-dead connection the agent gave up on.
      void this.refuse(previous.channel, new HawserError(ErrorCode.Superseded, `cluster "${name}" connected again from ${channel.peer}`));
    }
    this.leaseDurations.set(name, leaseDurationMs);
    this.metrics.connectedAgents.inc();
    this.metrics.registrations.inc({ result: admission.credential ? 'registered' : 'reconnected' });
    this.metrics.sessions.inc({ cluster: name });
    this.logger.info({ cluster: name, peer: channel.peer, newCredential: Boolean(admission.credential) }, 'agent connected');
    return session;
  }

  private leaseDurationFor(hello: wire.Hello): number {
    const asked = hello.leaseDurationMs;
    if (!asked) return this.options.clusterLeaseDurationMs;
    return Math.min(this.options.maxLeaseDurationMs, Math.max(this.options.minLeaseDurationMs, asked));
  }

  private async onHeartbeat(session: Session, heartbeat: wire.Heartbeat): Promise<void> {
    const { expiresAt } = await this.renewLease(session, { report: heartbeat.status, reportUnchanged: heartbeat.statusUnchanged });
    // Measured by the agent on its own clock: clock skew between the two cannot distort it.
    if (heartbeat.lastRttMs > 0) this.metrics.rtt.observe(heartbeat.lastRttMs / 1000);
    await session.channel.send({
      frame: { $case: 'heartbeatAck', value: { sequence: heartbeat.sequence, leaseExpiresAtUnixMs: expiresAt } },
    });
  }

  /**
   * Renews the session's lease and brings the stored cluster up to date: with a
   * new `report`, with `reportUnchanged` (only lastObservedTime moves), after an
   * expiry, or on `refresh` (a fresh session rewrites Ready and taints).
   */
  private async renewLease(
    session: Session,
    change: { report?: wire.ClusterStatus | undefined; reportUnchanged?: boolean; refresh?: boolean } = {},
  ): Promise<{ expiresAt: number }> {
    const { report, reportUnchanged = false, refresh = false } = change;
    const name = session.clusterName;
    const { expiresAt, wasExpired } = this.leases.renew(name, session.leaseDurationMs);
    this.metrics.lastHeartbeat.set({ cluster: name }, this.clock.now() / 1000);
    if (report || wasExpired || refresh || reportUnchanged) {
      await this.updateCluster(name, (cluster, now) => {
        const observed = reportUnchanged ? { ...cluster, status: { ...cluster.status, lastObservedTime: now.toISOString() } } : cluster;
        const next = markReachable(report ? applyStatusReport(cluster, report, now) : observed, now);
        next.status.leaseDurationSeconds = Math.round(session.leaseDurationMs / 1000);
        return next;
      });
      if (wasExpired) this.logger.info({ cluster: name }, 'cluster lease renewed after expiry: Ready restored, unreachable taint removed');
    }
    return { expiresAt };
  }

  private async onLeaseExpired(name: string): Promise<void> {
    const durationMs = this.leaseDurations.get(name) ?? this.options.clusterLeaseDurationMs;
    this.metrics.leaseExpiries.inc({ cluster: name });
    this.logger.warn({ cluster: name, leaseDurationMs: durationMs }, 'cluster lease expired: Ready Unknown, unreachable taint added');
    await this.updateCluster(name, (cluster, now) => {
      // A renewal may have raced ahead of this write; it wins.
      if (!this.leases.isExpired(name)) return cluster;
      return markUnreachable(cluster, durationMs, now);
    });
  }

  /** Status and lease changes: the agent repeats them, so they skip the fsync. */
  private updateCluster(name: string, change: (c: ManagedCluster, now: Date) => ManagedCluster): Promise<void> {
    return this.mutex.run(`cluster-status/${name}`, async () => {
      const cluster = await this.store.get('ManagedCluster', name);
      if (!cluster) return;
      const next = change(cluster, new Date(this.clock.now()));
      if (next === cluster) return;
      await this.store.put('ManagedCluster', name, next, { durable: false });
      this.metrics.ready.set({ cluster: name }, readyValue(next));
    }).catch((err: unknown) => {
      this.logger.error({ err, cluster: name }, 'cannot update cluster');
    });
  }
}
