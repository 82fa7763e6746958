import type { Logger } from 'pino';
import { type ManagedCluster, registrationRequestName, quoteBounded } from '../api/index.js';
import {
  type ByteStream,
  type Clock,
  type ConnectionServerTransport,
  ErrorCode,
  Feature,
  HawserError,
  type HubChannel,
  type HubConnection,
  isAuthFailure,
  type Inbound,
  localOffer,
  negotiate,
  type Negotiated,
  type ServerTransport,
  hubFramePriority,
  PrioritySender,
  proxyStreamKind,
  systemClock,
  toHawserError,
  type TimerHandle,
  type TunnelListener,
  wire,
} from '../tunnel/index.js';
import { defaultHandshakeAdmission, HandshakeAdmission, type HandshakeAdmissionOptions } from './admission.js';
import { ClusterStatusWriter } from './cluster-status.js';
import { markUnreachable, readyValue } from './clusters.js';
import { HeartbeatHandler } from './heartbeats.js';
import { LeaseTracker } from './leases.js';
import type { HubMetrics } from './metrics.js';
import { KeyedMutex } from './mutex.js';
import { type BucketPolicy, defaultFailureLimiterOptions, FailureLimiter, type FailureLimiterOptions, peerAddress } from './ratelimit.js';
import { type FrameHandler, type HandlerFactory, type SessionContext, SessionRouter } from './session.js';
import { defaultRegistrarLimits, Registrar, type RegistrarLimits } from './registration.js';
import type { HubStore } from './store.js';

/**
 * Idle proxy streams the hub holds per agent at most (feature proxy-pool): far
 * above the agent's own pool, far below the connection's stream limit.
 */
export const hubProxyPoolLimit = 16;

export interface HubCoreOptions extends RegistrarLimits {
  bootstrapTokens: readonly string[];
  autoApprove: boolean;
  /** Lease given to agents that do not ask for one. */
  clusterLeaseDurationMs: number;
  /** Bounds on what an agent may ask for. */
  minLeaseDurationMs: number;
  maxLeaseDurationMs: number;
  /** An agent must say hello within this long. */
  helloTimeoutMs: number;
  /** Failed bootstrap-token and credential attempts allowed per peer address. */
  authFailures: FailureLimiterOptions;
  /** Heartbeats allowed per session: far above what an agent sends (at most 10/s), far below a flood. */
  heartbeats: BucketPolicy;
  /** Largest heartbeat frame that carries a status report (the report is nearly all of it). */
  maxStatusBytes: number;
  /** Heartbeats waiting for their ack at most, per session; one more is HAWSER_HANDLER_OVERLOADED. */
  heartbeatQueueLimit: number;
  /** Optional protocol features this hub offers (see Feature in src/tunnel); a session uses those its agent offers too. */
  features: readonly string[];
  /** Streams not yet welcomed (saying hello, registering, waiting for approval) at most, per hub. */
  maxUnwelcomedStreams: number;
  /** The least a hub with too many streams still registering asks a refused one to wait (more when its handshake queue says so). */
  busyRetryAfterMs: number;
  /** Handshakes in progress at once, and the spread of the retry-after a hello past them gets (HAWSER_HUB_BUSY). */
  handshakes: HandshakeAdmissionOptions;
  /** What a hub with a full disk asks a registration to wait. */
  storageFullRetryAfterMs: number;
  /** A refusal waits this long for its Goodbye to go out, then ends the stream regardless. */
  goodbyeTimeoutMs: number;
}

export const defaultHubCoreOptions: HubCoreOptions = {
  ...defaultRegistrarLimits,
  bootstrapTokens: [],
  autoApprove: false,
  clusterLeaseDurationMs: 60_000,
  minLeaseDurationMs: 1_000,
  maxLeaseDurationMs: 3_600_000,
  helloTimeoutMs: 15_000,
  authFailures: defaultFailureLimiterOptions,
  heartbeats: { capacity: 40, refillPerSecond: 20 },
  maxStatusBytes: 64 * 1024,
  // Over the heartbeat burst: the rate bound refuses a flood before the queue fills.
  heartbeatQueueLimit: 64,
  features: [],
  maxUnwelcomedStreams: 1_024,
  busyRetryAfterMs: 5_000,
  handshakes: defaultHandshakeAdmission,
  storageFullRetryAfterMs: 60_000,
  goodbyeTimeoutMs: 5_000,
};

interface Session extends SessionContext {
  channel: HubChannel;
  /** The agent's UUID (Clusternet's cluster id), as its hello named it. */
  clusterId: string;
  leaseDurationMs: number;
  router: SessionRouter;
}

/** Longest hub incarnation id an agent may name in its hello. */
const maxIncarnationLength = 256;

/** A disk-full error from LevelDB or the file system, anywhere in the cause chain. */
function isDiskFull(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return true;
    if (e instanceof Error && /ENOSPC|No space left on device/i.test(e.message)) return true;
  }
  return false;
}

/**
 * The hub's protocol logic over any ServerTransport: registration, sessions,
 * heartbeats, leases and taints. Owns its sessions; stop() closes them.
 */
export class HubCore {
  readonly registrar: Registrar;
  private readonly mutex = new KeyedMutex();
  private readonly leases: LeaseTracker;
  private readonly statusWriter: ClusterStatusWriter;
  /** Handlers other components plug in (sync, proxy control), built for every welcomed session. */
  private readonly handlerFactories: HandlerFactory[] = [];
  private readonly sessions = new Map<string, Session>();
  /** When each cluster's last session ended, for the proxy's "offline since". */
  private readonly disconnectedAt = new Map<string, number>();
  private readonly leaseDurations = new Map<string, number>();
  private readonly channels = new Set<HubChannel>();
  private readonly refused = new WeakSet<HubChannel>();
  private readonly serving = new Set<Promise<void>>();
  private readonly authFailures: FailureLimiter;
  private readonly handshakes: HandshakeAdmission;
  private unwelcomed = 0;
  private listener: TunnelListener | undefined;
  private stopping = false;
  /** CAs agents are told to trust, in every welcome and pushed on change. */
  private trustBundle: wire.TrustBundle | undefined;
  /** Per cluster, the newest bundle version written to its stream (in memory: a restarted hub re-sends in every welcome). */
  private readonly bundleSent = new Map<string, number>();

  constructor(
    private readonly options: HubCoreOptions,
    private readonly store: HubStore,
    private readonly metrics: HubMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    random: () => number = Math.random,
  ) {
    this.handshakes = new HandshakeAdmission(options.handshakes, clock, random);
    metrics.handshakeLimit.set(this.handshakes.limit);
    this.registrar = new Registrar(store, this.mutex, clock, {
      ...options,
      bootstrapTokens: () => this.options.bootstrapTokens,
      autoApprove: options.autoApprove,
      onClusterDeleted: (name) => this.closeDeletedCluster(name),
    });
    this.leases = new LeaseTracker(clock, { expired: (name) => void this.onLeaseExpired(name) });
    this.authFailures = new FailureLimiter(options.authFailures, clock);
    this.statusWriter = new ClusterStatusWriter(store, this.mutex, this.leases, metrics, logger, clock);
    metrics.pooledProxyStreams = () => {
      let pooled = 0;
      for (const session of this.sessions.values()) pooled += session.pooledStreams ?? 0;
      return pooled;
    };
  }

  /**
   * Plugs a handler into every session welcomed from now on: it gets the
   * frame kinds it names, in its own bounded queue. Heartbeats are built in.
   */
  registerHandler(factory: HandlerFactory): void {
    this.handlerFactories.push(factory);
  }

  /** A connected cluster's session: its negotiated protocol and where its sync stands. */
  session(clusterName: string): SessionContext | undefined {
    const session = this.sessions.get(clusterName);
    if (!session) return undefined;
    const { clusterName: name, peer, negotiated, resume, send, ended } = session;
    return {
      clusterName: name,
      peer,
      negotiated,
      resume,
      send,
      ended,
      openStream: (kind, signal, options) => session.openStream(kind, signal, options),
      get openStreams() {
        return session.openStreams;
      },
      get pooledStreams() {
        return session.pooledStreams;
      },
    };
  }

  /** The live session of a cluster named by its name or its cluster id (Clusternet's sockets/CLUSTER-ID). */
  sessionFor(nameOrId: string): SessionContext | undefined {
    if (this.sessions.has(nameOrId)) return this.session(nameOrId);
    for (const s of this.sessions.values()) if (s.clusterId === nameOrId) return this.session(s.clusterName);
    return undefined;
  }

  /** When the cluster's last session ended in this hub's life (undefined: none has ended since the hub started). */
  disconnectedSince(clusterName: string): number | undefined {
    return this.disconnectedAt.get(clusterName);
  }

  /** A cluster as readers should see it: with its newest observed time, which may still be in memory. */
  clusterView(cluster: ManagedCluster): ManagedCluster {
    return this.statusWriter.liveView(cluster);
  }

  /** Resolves once every status the hub has acked so far is in the store (or failed and was logged). */
  statusWritesSettled(): Promise<void> {
    return this.statusWriter.settled();
  }

  async start(transport: ServerTransport): Promise<string> {
    // Clusters known from before a restart get one full lease to come back.
    for (const { object: cluster } of (await this.store.list('ManagedCluster')).items) {
      const duration = cluster.status.leaseDurationSeconds
        ? cluster.status.leaseDurationSeconds * 1000
        : this.options.clusterLeaseDurationMs;
      this.leaseDurations.set(cluster.metadata.name, duration);
      this.leases.renew(cluster.metadata.name, duration);
      this.metrics.ready.set({ cluster: cluster.metadata.name }, readyValue(cluster));
    }
    const serve = (channel: HubChannel, connection: HubConnection | undefined) => {
      // Owned until it ends: stop() waits for it, so the store never closes under a stream.
      const serving = this.serve(channel, connection).finally(() => this.serving.delete(serving));
      this.serving.add(serving);
    };
    // A transport whose connections carry request streams (proxy) hands over the connection too.
    this.listener =
      'listenConnections' in transport
        ? await (transport as ConnectionServerTransport).listenConnections((connection) => serve(connection.control, connection))
        : await transport.listen((channel) => serve(channel, undefined));
    return this.listener.address;
  }

  /**
   * A new trust bundle: every welcome carries it from now on, and every live
   * session gets it now, on its open stream (nothing reconnects). Resolves
   * with the clusters it was sent to.
   */
  async setTrustBundle(bundle: { caPems: string[]; version: number } | undefined): Promise<string[]> {
    this.trustBundle = bundle;
    if (!bundle) return [];
    const frame: wire.ConnectResponse = { frame: { $case: 'trustBundle', value: { caPems: bundle.caPems, version: bundle.version } } };
    const sent = await Promise.all(
      [...this.sessions.values()].map((session) =>
        session.channel.send(frame).then(
          () => {
            this.bundleSent.set(session.clusterName, bundle.version);
            return session.clusterName;
          },
          (err: unknown) => {
            // It gets the bundle in its next welcome.
            this.logger.warn({ cluster: session.clusterName, err: (err as Error).message }, 'cannot push the trust bundle; the agent gets it when it reconnects');
            return undefined;
          },
        ),
      ),
    );
    const reached = sent.filter((n): n is string => n !== undefined);
    this.logger.info({ version: bundle.version, cas: bundle.caPems.length, agents: reached.length }, 'trust bundle pushed to connected agents');
    return reached;
  }

  /** Which clusters were sent which trust bundle version, so operators see when a CA rotation may go on. */
  get trustBundleSent(): ReadonlyMap<string, number> {
    return new Map(this.bundleSent);
  }

  /** Handshakes in progress (hello received, neither welcomed nor waiting for approval yet). */
  get handshakesInProgress(): number {
    return this.handshakes.active;
  }

  /** Hellos waiting for a handshake slot, and the adaptive limit on handshakes now. */
  get handshakeAdmission(): { queued: number; limit: number; completionRatePerSec: number } {
    return { queued: this.handshakes.queued, limit: this.handshakes.limit, completionRatePerSec: this.handshakes.completionRatePerSec() };
  }

  get connectedClusters(): string[] {
    return [...this.sessions.keys()];
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.leases.stop();
    this.statusWriter.stop();
    this.registrar.close();
    for (const ch of this.channels) {
      ch.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down'));
    }
    await this.listener?.close();
    await Promise.allSettled([...this.channels].map((c) => c.closed));
    await Promise.allSettled([...this.serving]);
    // Acked statuses still queued, and observed times held in memory, are written before the caller closes the store.
    await this.statusWriter.settled();
    await this.statusWriter.flushObserved();
  }

  /** An operator deleted the cluster: its live session ends now, not at its next reconnect. */
  private closeDeletedCluster(name: string): void {
    const session = this.sessions.get(name);
    if (!session) return;
    void this.refuse(session.channel, new HawserError(ErrorCode.ClusterDeleted, `cluster "${name}" was deleted by an operator`));
  }

  /**
   * Refuses a stream: counted, logged, told why in a Goodbye, and always ended
   * with a status, even when the peer does not read (the Goodbye gets
   * goodbyeTimeoutMs to go out). Messages quote untrusted input bounded.
   */
  private async refuse(channel: HubChannel, error: HawserError, context: Record<string, unknown> = {}): Promise<void> {
    // One refusal per stream: the read loop and a handler can both find fault with the same frames.
    if (this.refused.has(channel)) return;
    this.refused.add(channel);
    this.metrics.rejected.inc({ code: error.code });
    this.logger.warn({ code: error.code, peer: channel.peer, ...context }, error.message);
    let timer: TimerHandle | undefined;
    const gaveUp = new Promise<void>((resolve) => (timer = this.clock.setTimeout(resolve, this.options.goodbyeTimeoutMs)));
    try {
      await Promise.race([
        channel.send({ frame: { $case: 'goodbye', value: { code: error.code, message: error.message, retryAfterMs: error.retryAfterMs } } }),
        gaveUp,
      ]);
    } catch {
      // The peer may already be gone; the close below still records the reason.
    } finally {
      timer?.cancel();
    }
    channel.close(error);
  }

  private async serve(channel: HubChannel, connection: HubConnection | undefined): Promise<void> {
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
    // Streams that have not been welcomed cost the hub without proving anything: bounded.
    let unwelcomed = true;
    this.unwelcomed++;
    const welcomed = () => {
      if (unwelcomed) this.unwelcomed--;
      unwelcomed = false;
    };
    try {
      if (this.unwelcomed > this.options.maxUnwelcomedStreams) {
        // Most of them wait for a handshake slot: come back when the queue has room, as a refused hello would.
        const retryAfterMs = Math.max(this.options.busyRetryAfterMs, this.handshakes.bookRetryAfterMs());
        return await this.refuse(
          channel,
          new HawserError(ErrorCode.HubBusy, `hub has ${this.options.maxUnwelcomedStreams} streams still registering; try again in ${retryAfterMs}ms`, {
            retryAfterMs,
          }),
        );
      }
      const first = await this.firstFrame(channel, iterator);
      if (!first) return;
      if (!first.ok) return await this.refuse(channel, first.error);
      if (first.frame.frame?.$case !== 'hello') {
        return await this.refuse(channel, new HawserError(ErrorCode.UnexpectedFrame, `first frame must be hello, got ${first.frame.frame?.$case}`));
      }
      const hello = first.frame.frame.value;
      let negotiated: Negotiated;
      try {
        negotiated = negotiate(localOffer(this.options.features), hello);
      } catch (err) {
        return await this.refuse(channel, toHawserError(err), { clusterId: quoteBounded(hello.clusterId, 64), agentVersion: quoteBounded(hello.agentVersion, 64) });
      }
      // Waits in the queue while a slot is due soon; ends the wait if the stream closes.
      const waiting = new AbortController();
      void channel.closed.then(() => waiting.abort());
      const queue = this.handshakes.enter(waiting.signal);
      this.metrics.handshakesQueued.set(this.handshakes.queued);
      const slot = await queue;
      this.metrics.handshakesQueued.set(this.handshakes.queued);
      if (slot.kind === 'abandoned') return;
      if (slot.kind === 'refused') {
        return await this.refuse(
          channel,
          new HawserError(
            ErrorCode.HubBusy,
            `hub has ${slot.inProgress} handshakes in progress (limit ${slot.limit}) and ${slot.queued} waiting; try again in ${slot.retryAfterMs}ms`,
            { retryAfterMs: slot.retryAfterMs },
          ),
          { clusterId: quoteBounded(hello.clusterId, 64) },
        );
      }
      try {
        session = await this.establish(channel, connection, hello, negotiated, slot.release);
      } finally {
        slot.release();
        this.metrics.handshakeLimit.set(this.handshakes.limit);
      }
      welcomed();
      if (!session) return;
      // A fresh session rewrites Ready and taints; queued like every status write.
      this.renewLease(session);
      // The read loop never waits for a handler: each frame is checked and queued with its
      // handler, which answers it in its own time (a heartbeat's ack never waits for the store).
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        const inbound = next.value;
        this.metrics.bytes.inc({ direction: 'in' }, inbound.bytes);
        if (!inbound.ok) return await this.refuse(channel, inbound.error, { cluster: session.clusterName });
        const refusal = session.router.route(inbound.frame.frame!, inbound.bytes);
        if (refusal) return await this.refuse(channel, refusal, { cluster: session.clusterName });
        countOut();
      }
    } catch (err) {
      const error = isDiskFull(err)
        ? new HawserError(ErrorCode.StorageFull, 'the hub cannot store anything: its disk is full', {
            cause: err,
            retryAfterMs: this.options.storageFullRetryAfterMs,
          })
        : toHawserError(err);
      if (error.code === ErrorCode.Internal) this.logger.error({ err, peer: channel.peer }, 'session failed');
      if (error.code === ErrorCode.Unavailable || error.code === ErrorCode.Cancelled) {
        channel.close(error); // the stream itself broke: nobody is left to tell
      } else {
        // A failure of the hub's own is still a refusal the agent hears about and the hub counts.
        await this.refuse(channel, error, session ? { cluster: session.clusterName } : {});
      }
    } finally {
      // Every stream ends with a status, also when the agent only half-closed it
      // (a no-op when a refusal or the transport already ended it).
      channel.close();
      welcomed();
      await session?.router.close();
      countOut();
      this.channels.delete(channel);
      this.metrics.openStreams.dec();
      if (session) this.metrics.connectedAgents.dec();
      if (session && this.sessions.get(session.clusterName) === session) {
        this.sessions.delete(session.clusterName);
        this.disconnectedAt.set(session.clusterName, this.clock.now());
      }
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
  private async establish(
    channel: HubChannel,
    connection: HubConnection | undefined,
    hello: wire.Hello,
    negotiated: Negotiated,
    /** Called once the request waits for an operator: waiting is not a handshake in progress. */
    handshakeDone: () => void,
  ): Promise<Session | undefined> {
    let admission;
    // Listen for approval before anything can make the request pending: an
    // approve that lands while RegistrationPending is on the wire must not be lost.
    const requestName = registrationRequestName(hello.clusterId);
    const done = new AbortController();
    void channel.closed.then(() => done.abort());
    const approved = this.registrar.waitForApproval(requestName, done.signal);
    const peer = peerAddress(channel.peer);
    try {
      // A peer over its failure budget may not try the bootstrap token at all. A cluster
      // credential (a 256-bit secret, not guessable) is still checked, so sites sharing one
      // address behind carrier NAT keep connecting while a neighbour guesses.
      const waitMs = this.authFailures.retryAfterMs(peer);
      if (waitMs > 0 && hello.auth?.$case !== 'clusterCredential') {
        throw new HawserError(ErrorCode.RateLimited, `too many failed attempts from ${peer}; retry in ${waitMs}ms`, { retryAfterMs: waitMs });
      }
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
        handshakeDone();
        if (!(await approved)) return undefined;
        admission = await this.registrar.admit(hello);
        if (admission.kind === 'pending') throw new HawserError(ErrorCode.Internal, `request ${requestName} approved but still pending`);
      }
    } catch (err) {
      let error = toHawserError(err);
      if (error.code === ErrorCode.Internal) throw err;
      if (isAuthFailure(error.code)) {
        const waitMs = this.authFailures.recordFailure(peer);
        if (waitMs > 0) error = new HawserError(error.code, error.message, { cause: error, retryAfterMs: waitMs });
      }
      this.metrics.registrations.inc({ result: 'refused' });
      await this.refuse(channel, error, { clusterId: quoteBounded(hello.clusterId, 64) });
      return undefined;
    } finally {
      done.abort();
    }

    const cluster = admission.cluster;
    const name = cluster.metadata.name;
    const leaseDurationMs = this.leaseDurationFor(hello);
    // Proxy streams are taken only from a session that negotiated them, and from before its
    // welcome on: the agent may open one as soon as it reads the welcome.
    const streams = negotiated.features.has(Feature.ProxyStreams) ? connection : undefined;
    streams?.acceptStreams({
      // Feature proxy-pool: the agent keeps idle proxy streams open ahead, a bounded number.
      ...(negotiated.features.has(Feature.ProxyPool) ? { pools: { [proxyStreamKind]: hubProxyPoolLimit } } : {}),
      announce: (request) =>
        channel.send({ frame: { $case: 'openStream', value: { streamId: request.id, kind: request.kind, prelude: request.prelude ? Buffer.from(request.prelude.buffer, request.prelude.byteOffset, request.prelude.byteLength) : Buffer.alloc(0) } } }),
    });
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
          credentialExpiresAtUnixMs: admission.credentialExpiresAtMs ?? 0,
          publicKeyFingerprint: cluster.spec.publicKeyFingerprint ?? '',
          ...(this.trustBundle ? { trustBundle: this.trustBundle } : {}),
          leaseDurationMs,
          heartbeatIntervalMs: Math.max(100, Math.floor(leaseDurationMs / 3)),
          protocolVersion: negotiated.protocolVersion,
          features: [...negotiated.features],
        },
      },
    });
    if (this.trustBundle) this.bundleSent.set(name, Number(this.trustBundle.version));
    // An incarnation id longer than any this hub makes is not one of its own: resume from nothing.
    const resume: SessionContext['resume'] = {
      ...(hello.hubIncarnation.length <= maxIncarnationLength
        ? { hubIncarnation: hello.hubIncarnation, lastAckedRevision: hello.lastAckedRevision, desiredDigest: hello.desiredDigest.slice(0, 128) }
        : { hubIncarnation: '', lastAckedRevision: 0 }),
      syncModeInEffect: hello.syncModeInEffect,
      // Feature "chunks": where a large object's transfer stopped, and the agent's own size limit.
      ...(hello.partialObject ? { partialObject: hello.partialObject } : {}),
      ...(hello.maxObjectBytes ? { maxObjectBytes: Number(hello.maxObjectBytes) } : {}),
    };
    const session = this.newSession(name, hello.clusterId, channel, streams, leaseDurationMs, negotiated, resume);
    const previous = this.sessions.get(name);
    this.sessions.set(name, session);
    // A new session's first report is written even when equal to the last (the cluster may be new under an old name).
    this.statusWriter.forgetReport(name);
    if (previous) {
      // The newest stream wins: the old one is a half-dead connection the agent gave up on.
      void this.refuse(previous.channel, new HawserError(ErrorCode.Superseded, `cluster "${name}" connected again from ${channel.peer}`));
    }
    this.leaseDurations.set(name, leaseDurationMs);
    this.metrics.connectedAgents.inc();
    this.metrics.registrations.inc({ result: admission.credential ? 'registered' : 'reconnected' });
    this.metrics.sessions.inc({ cluster: name });
    this.logger.info({ cluster: name, peer: channel.peer, newCredential: Boolean(admission.credential) }, 'agent connected');
    if (hello.cacheQuarantines > 0) {
      // Reported by the agent (it has no metrics endpoint); bounded so one hello cannot skew the count.
      this.metrics.agentCacheQuarantines.inc({ cluster: name }, Math.min(hello.cacheQuarantines, 100));
      this.logger.error({ cluster: name, quarantines: hello.cacheQuarantines }, 'agent quarantined a corrupt offline cache');
    }
    return session;
  }

  private leaseDurationFor(hello: wire.Hello): number {
    const asked = hello.leaseDurationMs;
    if (!asked) return this.options.clusterLeaseDurationMs;
    return Math.min(this.options.maxLeaseDurationMs, Math.max(this.options.minLeaseDurationMs, asked));
  }

  /** A welcomed session with its router: the built-in heartbeat handler, then every registered one. */
  private newSession(
    clusterName: string,
    clusterId: string,
    channel: HubChannel,
    streams: HubConnection | undefined,
    leaseDurationMs: number,
    negotiated: Negotiated,
    resume: SessionContext['resume'],
  ): Session {
    const ending = new AbortController();
    void channel.closed.then(() => ending.abort());
    // Heartbeat acks never wait behind sync frames queued here (src/tunnel/queue.ts).
    const sender = new PrioritySender<wire.ConnectResponse>((frame) => channel.send(frame), hubFramePriority);
    const context: SessionContext = {
      clusterName,
      peer: channel.peer,
      negotiated,
      resume,
      send: (frame) => sender.send(frame),
      ended: ending.signal,
      openStream: (kind, signal, options): Promise<ByteStream> =>
        streams
          ? streams.openStream(kind, signal, options)
          : Promise.reject(
              new HawserError(
                ErrorCode.ProxyUnsupported,
                `the agent of cluster "${clusterName}" did not negotiate request streams (feature "${Feature.ProxyStreams}"): it is older than this hub; upgrade it`,
              ),
            ),
      get openStreams() {
        return streams?.openStreams ?? 0;
      },
      get pooledStreams() {
        return streams?.pooledStreams ?? 0;
      },
    };
    const handlers: FrameHandler[] = [
      new HeartbeatHandler(context, leaseDurationMs, this.options, {
        leases: this.leases,
        writer: this.statusWriter,
        metrics: this.metrics,
        clock: this.clock,
        logger: this.logger,
      }),
      ...this.handlerFactories.map((build) => build(context)),
    ];
    const router = new SessionRouter(handlers, (error) => {
      // A send that failed because the stream broke: nobody is left to tell.
      if (error.code === ErrorCode.Unavailable || error.code === ErrorCode.Cancelled) channel.close(error);
      else void this.refuse(channel, error, { cluster: clusterName });
    });
    // On top of the context, not a copy of it: a spread would freeze the openStreams getter.
    return Object.assign(Object.create(context) as SessionContext, { channel, clusterId, leaseDurationMs, router }) as Session;
  }

  /** Renews a new session's lease and queues the rewrite of Ready and taints (never waits for the store). */
  private renewLease(session: Session): void {
    this.leases.renew(session.clusterName, session.leaseDurationMs);
    this.metrics.lastHeartbeat.set({ cluster: session.clusterName }, this.clock.now() / 1000);
    this.statusWriter.queue(session.clusterName, { leaseDurationMs: session.leaseDurationMs, renewed: true });
  }

  private async onLeaseExpired(name: string): Promise<void> {
    const durationMs = this.leaseDurations.get(name) ?? this.options.clusterLeaseDurationMs;
    this.metrics.leaseExpiries.inc({ cluster: name });
    this.logger.warn({ cluster: name, leaseDurationMs: durationMs }, 'cluster lease expired: Ready Unknown, unreachable taint added');
    await this.statusWriter.update(name, (cluster, now) => {
      // A renewal may have raced ahead of this write; it wins.
      if (!this.leases.isExpired(name)) return cluster;
      return markUnreachable(cluster, durationMs, now);
    });
  }
}
