import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { boundedText, quoteBounded, type SyncMode } from '../api/index.js';
import type { OfflineCache } from '../cache/index.js';
import {
  type AgentChannel,
  Backoff,
  type BackoffPolicy,
  type ClientTransport,
  type Clock,
  ErrorCode,
  HawserError,
  isErrorCode,
  isPermanent,
  needsOperator,
  signHello,
  systemClock,
  type TimerHandle,
  toHawserError,
  validateTrustBundle,
  wire,
} from '../tunnel/index.js';
import type { AgentIdentity, IdentityStore } from './identity.js';
import type { ClusterReader } from './kube.js';
import type { StoredTrustBundle, TrustStore } from './trust.js';
import { type AgentState, canTransition } from './state.js';

export interface AgentCoreOptions {
  clusterRegName: string;
  clusterRegNamespace?: string;
  clusterType: string;
  clusterLabels: Record<string, string>;
  clusterSyncMode: SyncMode;
  clusterStatusUpdateFrequencyMs: number;
  clusterLeaseDurationMs: number;
  backoff: BackoffPolicy;
  bootstrapToken?: string;
  /** No welcome (or pending notice) within this long: give up the dial. */
  registerTimeoutMs: number;
  /** Heartbeats unanswered for this many intervals: the link is dead. */
  missedHeartbeatLimit: number;
  agentVersion: string;
}

const syncModeToWire: Record<SyncMode, wire.SyncMode> = {
  Push: wire.SyncMode.SYNC_MODE_PUSH,
  Pull: wire.SyncMode.SYNC_MODE_PULL,
  Dual: wire.SyncMode.SYNC_MODE_DUAL,
};

export interface AgentDeps {
  transport: ClientTransport;
  reader: ClusterReader;
  /** Where the identity record lives (beside the cache). */
  identityStore: IdentityStore;
  /** The LevelDB cache; read once to migrate a legacy identity. */
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
}

/**
 * The agent's tunnel client: dials, registers, heartbeats and reconnects.
 * Emits 'state' (AgentState) and 'error' is never emitted: failures become
 * the backing-off state's reason.
 */
export class AgentCore extends EventEmitter<{ state: [AgentState]; rtt: [number] }> {
  private current: AgentState = { kind: 'idle' };
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private loop: Promise<void> | undefined;
  private identity: AgentIdentity | undefined;
  private channel: AgentChannel | undefined;
  private wake: (() => void) | undefined;
  private stopRequested = false;
  private attempt = 0;
  /** The hub refused our credential: register again with the bootstrap token and our key (keeping the credential). */
  private preferBootstrap = false;
  private unreportedQuarantines: number;
  lastError: HawserError | undefined;
  lastRttMs: number | undefined;
  /** The trust bundle stored durably and in use for dials; undefined before the first. */
  trustBundle: StoredTrustBundle | undefined;

  constructor(
    readonly options: AgentCoreOptions,
    private readonly deps: AgentDeps,
  ) {
    super();
    this.clock = deps.clock ?? systemClock;
    this.backoff = new Backoff(options.backoff, deps.random ?? Math.random);
    this.unreportedQuarantines = deps.cacheQuarantines ?? 0;
  }

  get state(): AgentState {
    return this.current;
  }

  get clusterId(): string | undefined {
    return this.identity?.clusterId;
  }

  private setState(next: AgentState): void {
    if (!canTransition(this.current.kind, next.kind)) {
      throw new Error(`agent state ${this.current.kind} -> ${next.kind} is not allowed`);
    }
    const from = this.current.kind;
    this.current = next;
    const { kind, ...detail } = next;
    const log = { from, to: kind, ...detail, ...(next.kind === 'backing-off' ? { reason: next.reason.toJSON() } : {}) };
    if (next.kind === 'backing-off') this.deps.logger.warn(log, `agent ${kind}`);
    else this.deps.logger.info(log, `agent ${kind}`);
    this.emit('state', next);
  }

  /** Loads (or creates) the cluster identity; a damaged cache fails here, before any dial. */
  async init(): Promise<AgentIdentity> {
    if (!this.identity) {
      const loaded = await this.deps.identityStore.loadOrCreate(this.deps.cache);
      if (loaded.damaged) this.deps.logger.error({ path: this.deps.identityStore.path, reason: loaded.damaged }, 'agent identity file was damaged; recovered it from its backup');
      else if (loaded.source !== 'file') this.deps.logger.info({ clusterId: loaded.identity.clusterId, source: loaded.source }, 'agent identity ready');
      this.identity = loaded.identity;
      await this.loadTrustBundle();
    }
    return this.identity;
  }

  /** The bundle stored by an earlier run; a damaged one is logged and left out (--parent-ca-file still holds). */
  private async loadTrustBundle(): Promise<void> {
    const trust = this.deps.trust;
    if (!trust) return;
    const loaded = await trust.store.load();
    if (loaded.kind === 'damaged') {
      this.deps.logger.error({ code: ErrorCode.InvalidTrustBundle, path: trust.store.path, reason: boundedText(loaded.reason, 256) }, 'stored trust bundle is damaged; trusting --parent-ca-file only until the hub sends it again');
      return;
    }
    if (loaded.kind !== 'ok') return;
    trust.apply(loaded.bundle.caPems);
    this.trustBundle = loaded.bundle;
  }

  /**
   * A bundle from the hub: validated, stored durably, and only then trusted by
   * later dials. The live stream is never dropped for it; a bad bundle or a
   * failed write leaves the old trust as it was.
   */
  private async adoptTrustBundle(bundle: wire.TrustBundle): Promise<void> {
    const trust = this.deps.trust;
    if (!trust) return;
    const version = Number(bundle.version);
    const current = this.trustBundle;
    if (current && current.version === version && current.caPems.join('') === bundle.caPems.join('')) return;
    // The hub this stream verified is the authority, also when its version went back (its data dir
    // was restored or reset): refusing would leave the agent unable to follow its next rotation.
    if (current && version < current.version) {
      this.deps.logger.warn({ version, stored: current.version }, 'hub sent a trust bundle with a lower version than the stored one; adopting it (the hub was restored or reset?)');
    }
    let fingerprints: string[];
    try {
      fingerprints = validateTrustBundle(bundle.caPems).map((c) => c.fingerprint);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.InvalidTrustBundle);
      this.deps.logger.error({ code: error.code, version }, boundedText(error.message, 256));
      return;
    }
    const next: StoredTrustBundle = { version, caPems: [...bundle.caPems] };
    try {
      await trust.store.save(next);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.CacheWriteFailed);
      this.deps.logger.error({ code: error.code, path: trust.store.path, version }, `cannot store the hub's trust bundle; keeping the previous trust: ${boundedText(error.message, 256)}`);
      return;
    }
    trust.apply(next.caPems);
    this.trustBundle = next;
    this.deps.logger.info({ version, cas: fingerprints, path: trust.store.path }, 'trust bundle stored; later dials trust it');
  }

  /** Starts the reconnect loop; calling again returns the same loop. */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.loop;
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    this.channel?.close();
    this.wake?.();
    if (!this.loop && this.current.kind !== 'stopped') this.setState({ kind: 'stopped' });
    await this.loop;
    this.deps.transport.close();
  }

  private async run(): Promise<void> {
    await this.init();
    while (!this.stopRequested) {
      this.setState({ kind: 'connecting', attempt: this.attempt++ });
      const error = await this.session();
      this.backoff.markDisconnected(this.clock.now());
      if (this.stopRequested) break;
      this.lastError = error;
      // A mistake only an operator can fix (a wrong CA) is retried, but only at the backoff cap.
      const delayMs = this.backoff.next(needsOperator(error.code) ? Number.POSITIVE_INFINITY : error.retryAfterMs);
      this.setState({ kind: 'backing-off', delayMs, reason: error });
      if (isPermanent(error.code) || needsOperator(error.code)) {
        this.deps.logger.error({ code: error.code, attempts: this.backoff.attempts }, `hub refused this agent: ${error.message}`);
      }
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(resolve, delayMs);
        this.wake = () => {
          timer.cancel();
          resolve();
        };
      });
      this.wake = undefined;
    }
    this.setState({ kind: 'stopped' });
  }

  /** The credential when we have one the hub has not refused; else the bootstrap token. Both signed with our key. */
  private helloFrame(identity: AgentIdentity): wire.ConnectRequest {
    const o = this.options;
    const useCredential = identity.credential !== undefined && !(this.preferBootstrap && o.bootstrapToken);
    const auth: wire.Hello['auth'] = useCredential
      ? { $case: 'clusterCredential', value: identity.credential! }
      : { $case: 'bootstrapToken', value: o.bootstrapToken ?? '' };
    const hello: wire.Hello = {
      clusterId: identity.clusterId,
      auth,
      registration: {
        name: o.clusterRegName,
        namespace: o.clusterRegNamespace ?? '',
        clusterType: o.clusterType,
        labels: o.clusterLabels,
        syncMode: syncModeToWire[o.clusterSyncMode],
      },
      lastAckedRevision: 0,
      leaseDurationMs: o.clusterLeaseDurationMs,
      agentVersion: o.agentVersion,
      publicKey: Buffer.alloc(0),
      cacheQuarantines: this.unreportedQuarantines,
      protocolVersion: 1,
      minProtocolVersion: 1,
      features: [],
      hubIncarnation: '',
    };
    const key = { publicKeyDer: Buffer.from(identity.publicKey, 'base64'), privateKeyDer: Buffer.from(identity.privateKey, 'base64') };
    return { frame: { $case: 'hello', value: signHello(hello, key, this.clock.now()) } };
  }

  /**
   * Stores a newly issued credential; adopts it only once durable. False when
   * the write failed: the caller decides whether the session can go on.
   */
  private async storeCredential(w: wire.Welcome): Promise<boolean> {
    const next: AgentIdentity = {
      ...this.identity!,
      credential: w.credential,
      clusterName: w.clusterName,
      dedicatedNamespace: w.dedicatedNamespace,
      ...(w.credentialExpiresAtUnixMs ? { credentialExpiresAtMs: w.credentialExpiresAtUnixMs } : {}),
    };
    try {
      await this.deps.identityStore.save(next);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.CacheWriteFailed);
      this.deps.logger.error({ code: error.code, path: this.deps.identityStore.path }, `cannot store the new cluster credential; keeping the previous one: ${error.message}`);
      return false;
    }
    this.identity = next;
    this.preferBootstrap = false;
    return true;
  }

  /** One stream from dial to close; returns why it ended. */
  private async session(): Promise<HawserError> {
    const identity = this.identity!;
    let renewTimer: TimerHandle | undefined;
    // Checked before dialling: a stream opened and then abandoned would sit on the hub until its hello timeout.
    if (identity.credential === undefined && !this.options.bootstrapToken) {
      return new HawserError(ErrorCode.BadBootstrapToken, 'no cluster credential cached and no bootstrap token given (--bootstrap-token or PARENT_CLUSTER_TOKEN)');
    }
    const channel = this.deps.transport.open();
    this.channel = channel;
    let registerTimer: TimerHandle | undefined;
    let heartbeat: Heartbeater | undefined;
    let goodbye: HawserError | undefined;
    let local: HawserError | undefined;
    const fail = (error: HawserError) => {
      local ??= error;
      channel.close(error);
    };
    try {
      this.setState({ kind: 'registering' });
      registerTimer = this.clock.setTimeout(
        () => fail(new HawserError(ErrorCode.RegistrationTimeout, `hub did not answer hello within ${this.options.registerTimeoutMs}ms`)),
        this.options.registerTimeoutMs,
      );
      await channel.send(this.helloFrame(identity)).catch((err: unknown) => fail(toHawserError(err, ErrorCode.Unavailable)));
      for await (const inbound of channel.frames()) {
        if (!inbound.ok) {
          fail(inbound.error);
          break;
        }
        const frame = inbound.frame.frame!;
        switch (frame.$case) {
          case 'registrationPending':
            registerTimer.cancel();
            this.deps.logger.warn({ request: quoteBounded(frame.value.requestName, 128) }, `registration pending: ${quoteBounded(frame.value.message)}`);
            this.setState({ kind: 'registering', pendingRequest: frame.value.requestName });
            break;
          case 'welcome': {
            registerTimer.cancel();
            const w = frame.value;
            const usedCredential = identity.credential !== undefined && !(this.preferBootstrap && this.options.bootstrapToken);
            if (w.credential && !(await this.storeCredential(w)) && !usedCredential) {
              // Registered with the bootstrap token and the credential is not durable: not used, so
              // never a lockout. End the session and retry; the next hello re-issues (signed with our key).
              fail(new HawserError(ErrorCode.CacheWriteFailed, `cannot store the cluster credential in ${this.deps.identityStore.path}; will retry`));
              break;
            }
            this.unreportedQuarantines = 0;
            if (w.trustBundle) await this.adoptTrustBundle(w.trustBundle);
            renewTimer = this.scheduleRenewal(() => fail(new HawserError(ErrorCode.Unavailable, 'reconnecting to renew the cluster credential')));
            this.backoff.markConnected(this.clock.now());
            this.setState({ kind: 'ready', clusterName: w.clusterName, since: this.clock.now() });
            heartbeat = new Heartbeater(this, channel, w.heartbeatIntervalMs, fail);
            heartbeat.start();
            break;
          }
          case 'heartbeatAck':
            heartbeat?.acked(frame.value);
            break;
          case 'trustBundle':
            await this.adoptTrustBundle(frame.value);
            break;
          case 'goodbye':
            goodbye = new HawserError(
              isErrorCode(frame.value.code) ? frame.value.code : ErrorCode.Unavailable,
              // The hub's words, bounded: they reach this agent's logs.
              boundedText(frame.value.message, 1024),
              { retryAfterMs: frame.value.retryAfterMs },
            );
            break;
        }
      }
      const closedWith = await channel.closed;
      const error = goodbye ?? local ?? closedWith ?? new HawserError(ErrorCode.Unavailable, 'hub ended the stream');
      if (error.code === ErrorCode.BadCredential && this.options.bootstrapToken && !this.preferBootstrap) {
        // The hub does not know (or no longer accepts) our credential, e.g. its data was reset.
        // The stored credential stays: it is replaced only once a new one is durable.
        this.preferBootstrap = true;
        this.deps.logger.warn({ clusterId: identity.clusterId }, 'hub refused the cached credential; registering again with the bootstrap token and this cluster\'s key');
      }
      if (error.code === ErrorCode.KeyMismatch || error.code === ErrorCode.ClusterDeleted) {
        this.deps.logger.error({ code: error.code, clusterId: identity.clusterId }, error.message);
      }
      return error;
    } catch (err) {
      channel.close();
      return toHawserError(err, ErrorCode.Unavailable);
    } finally {
      registerTimer?.cancel();
      renewTimer?.cancel();
      heartbeat?.stop();
      this.channel = undefined;
    }
  }

  /**
   * Ends a session that outlives two thirds of the credential's remaining
   * life, so the next hello (signed with our key) gets a renewed one.
   */
  private scheduleRenewal(renew: () => void): TimerHandle | undefined {
    const expiresAt = this.identity?.credentialExpiresAtMs;
    if (!expiresAt) return undefined;
    const now = this.clock.now();
    const renewAt = now + Math.max(0, ((expiresAt - now) * 2) / 3);
    let handle: TimerHandle | undefined;
    const arm = () => {
      const left = renewAt - this.clock.now();
      if (left <= 0) return renew();
      // Node fires a timer over 2^31-1 ms at once: wait in steps.
      handle = this.clock.setTimeout(arm, Math.min(left, 2 ** 31 - 1));
    };
    arm();
    return { cancel: () => handle?.cancel() };
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

/** A full status goes out at least every this many status periods, changed or not. */
const fullStatusEvery = 10;

/** Identity of a status report, ignoring when it was observed. */
function statusKey(status: wire.ClusterStatus): string {
  return JSON.stringify({ ...status, observedAtUnixMs: 0 });
}

/**
 * Heartbeats for one session: lease renewals every interval, the cluster
 * status every status period, and a watchdog that ends the session when
 * acks stop coming (a link that is up but passes nothing).
 */
class Heartbeater {
  private sequence = 0;
  private lastAckAt: number;
  private lastStatusAt = -Infinity;
  private lastStatus: wire.ClusterStatus | undefined;
  private freshStatus: wire.ClusterStatus | undefined;
  /** The last status that went out in full, and when. */
  private sentStatus: { key: string; at: number } | undefined;
  private refreshing = false;
  private sending = false;
  private stopped = false;
  private tickTimer: TimerHandle | undefined;
  private graceTimer: TimerHandle | undefined;
  private readonly sentAt = new Map<number, number>();
  private readonly intervalMs: number;

  constructor(
    private readonly agent: AgentCore,
    private readonly channel: AgentChannel,
    hubIntervalMs: number,
    private readonly fail: (e: HawserError) => void,
  ) {
    const o = agent.options;
    this.intervalMs = Math.max(50, Math.min(hubIntervalMs || o.clusterLeaseDurationMs / 3, o.clusterStatusUpdateFrequencyMs));
    this.lastAckAt = agent.clockRef.now();
  }

  start(): void {
    this.tick();
  }

  /** Ends this session's heartbeats; a status read still in flight is then dropped. */
  stop(): void {
    this.stopped = true;
    this.tickTimer?.cancel();
    this.graceTimer?.cancel();
  }

  acked(ack: wire.HeartbeatAck): void {
    const now = this.agent.clockRef.now();
    this.lastAckAt = now;
    const sent = this.sentAt.get(ack.sequence);
    if (sent !== undefined) {
      this.agent.recordRtt(now - sent);
      this.sentAt.delete(ack.sequence);
    }
  }

  private tick(): void {
    if (this.stopped) return;
    const clock = this.agent.clockRef;
    const now = clock.now();
    const silentMs = now - this.lastAckAt;
    if (silentMs > this.intervalMs * this.agent.options.missedHeartbeatLimit) {
      this.fail(new HawserError(ErrorCode.HeartbeatTimeout, `no heartbeat ack from the hub for ${silentMs}ms`));
      return;
    }
    if (!this.refreshing && now - this.lastStatusAt >= this.agent.options.clusterStatusUpdateFrequencyMs) {
      // The status rides on this tick's heartbeat when the read is quick. A slow API server
      // must not delay the lease renewal: after a short grace the heartbeat goes without it.
      this.refreshing = true;
      this.lastStatusAt = now;
      this.graceTimer = clock.setTimeout(() => void this.beat(), Math.min(2_000, this.intervalMs / 4));
      void this.agent.readStatus(this.lastStatus).then((status) => {
        this.graceTimer?.cancel();
        this.refreshing = false;
        this.lastStatus = status;
        this.freshStatus = status;
        void this.beat();
      });
    } else {
      void this.beat();
    }
    this.tickTimer = clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  private async beat(): Promise<void> {
    // A send still waiting for drain means the link is slow: do not pile up more.
    if (this.sending || this.stopped) return;
    this.sending = true;
    const fresh = this.freshStatus;
    const now = this.agent.clockRef.now();
    let status = fresh;
    let statusUnchanged = false;
    let key: string | undefined;
    if (fresh) {
      key = statusKey(fresh);
      // An unchanged report is sent as a flag; a full one still goes out now and then.
      const fullEveryMs = this.agent.options.clusterStatusUpdateFrequencyMs * fullStatusEvery;
      if (this.sentStatus?.key === key && now - this.sentStatus.at < fullEveryMs) {
        status = undefined;
        statusUnchanged = true;
      }
    }
    try {
      const sequence = ++this.sequence;
      this.sentAt.set(sequence, now);
      if (this.sentAt.size > 64) this.sentAt.delete(this.sentAt.keys().next().value!);
      await this.channel.send({
        frame: {
          $case: 'heartbeat',
          value: { sequence, sentAtUnixMs: now, status, lastRttMs: Math.round(this.agent.lastRttMs ?? 0), statusUnchanged },
        },
      });
      if (this.freshStatus === fresh) this.freshStatus = undefined;
      if (status && key) this.sentStatus = { key, at: now };
    } catch (err) {
      this.stop();
      this.fail(toHawserError(err, ErrorCode.Unavailable));
    } finally {
      this.sending = false;
    }
  }

}
