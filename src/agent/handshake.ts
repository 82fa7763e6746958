import type { Logger } from 'pino';
import { boundedText, type SyncMode } from '../api/core.js';
import type { OfflineCache } from '../cache/index.js';
import {
  acceptWelcome,
  type Clock,
  ErrorCode,
  HawserError,
  localOffer,
  type Negotiated,
  signHello,
  type TimerHandle,
  toHawserError,
  validateTrustBundle,
  wire,
} from '../tunnel/index.js';
import type { AgentIdentity, IdentityStore } from './identity.js';
import type { SyncResume } from './sync-state.js';
import type { StoredTrustBundle, TrustStore } from './trust.js';

// Who this agent is to the hub, and what it keeps from a welcome: the hello
// (identity, credential or bootstrap token, signed with the cluster key), the
// protocol offer, a newly issued credential (adopted only once durable) and
// the hub's trust bundle (trusted by later dials only once stored).

export interface HandshakeOptions {
  clusterRegName: string;
  clusterRegNamespace?: string;
  clusterType: string;
  clusterLabels: Record<string, string>;
  clusterSyncMode: SyncMode;
  /** The mode the agent runs (clusterSyncMode with its feature gates applied); default clusterSyncMode. */
  clusterSyncModeInEffect?: SyncMode;
  clusterLeaseDurationMs: number;
  bootstrapToken?: string;
  agentVersion: string;
  /** Optional protocol features this agent offers. */
  features?: readonly string[];
}

export interface HandshakeDeps {
  identityStore: IdentityStore;
  cache?: OfflineCache;
  trust?: { store: TrustStore; apply(caPems: string[]): void };
  logger: Logger;
  clock: Clock;
}

const syncModeToWire: Record<SyncMode, wire.SyncMode> = {
  Push: wire.SyncMode.SYNC_MODE_PUSH,
  Pull: wire.SyncMode.SYNC_MODE_PULL,
  Dual: wire.SyncMode.SYNC_MODE_DUAL,
};

export class Handshake {
  identity: AgentIdentity | undefined;
  /** The trust bundle stored durably and in use for dials; undefined before the first. */
  trustBundle: StoredTrustBundle | undefined;
  /** The hub refused our credential: register again with the bootstrap token and our key (keeping the credential). */
  private preferBootstrap = false;

  constructor(
    private readonly options: HandshakeOptions,
    private readonly deps: HandshakeDeps,
    /** Corrupt caches quarantined at start: told to the hub in the next hello, which counts them. */
    private unreportedQuarantines = 0,
  ) {}

  /** Damaged cache data quarantined since start (e.g. desired-state records): told in the next hello. */
  noteQuarantines(count: number): void {
    this.unreportedQuarantines += count;
  }

  /** Loads (or creates) the cluster identity; a damaged cache fails here, before any dial. */
  async init(): Promise<AgentIdentity> {
    if (!this.identity) {
      const { identityStore, cache, logger } = this.deps;
      const loaded = await identityStore.loadOrCreate(cache);
      if (loaded.damaged) logger.error({ path: identityStore.path, reason: loaded.damaged }, 'agent identity file was damaged; recovered it from its backup');
      else if (loaded.source !== 'file') logger.info({ clusterId: loaded.identity.clusterId, source: loaded.source }, 'agent identity ready');
      this.identity = loaded.identity;
      await this.loadTrustBundle();
    }
    return this.identity;
  }

  /** Why this agent cannot dial yet, checked before opening a stream (one opened and abandoned would sit on the hub until its hello timeout). */
  cannotDial(): HawserError | undefined {
    if (this.identity?.credential === undefined && !this.options.bootstrapToken) {
      return new HawserError(ErrorCode.BadBootstrapToken, 'no cluster credential cached and no bootstrap token given (--bootstrap-token or PARENT_CLUSTER_TOKEN)');
    }
    return undefined;
  }

  /** True when the next hello presents the credential (not the bootstrap token). */
  private usesCredential(): boolean {
    return this.identity?.credential !== undefined && !(this.preferBootstrap && this.options.bootstrapToken);
  }

  /** The credential when we have one the hub has not refused; else the bootstrap token. Both signed with our key. */
  helloFrame(sync: SyncResume): wire.ConnectRequest {
    const identity = this.identity!;
    const o = this.options;
    const auth: wire.Hello['auth'] = this.usesCredential()
      ? { $case: 'clusterCredential', value: identity.credential! }
      : { $case: 'bootstrapToken', value: o.bootstrapToken ?? '' };
    const offer = localOffer(o.features ?? []);
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
      lastAckedRevision: sync.lastAckedRevision,
      hubIncarnation: sync.hubIncarnation,
      ...(sync.partialObject ? { partialObject: sync.partialObject } : {}),
      ...(sync.maxObjectBytes ? { maxObjectBytes: sync.maxObjectBytes } : {}),
      syncModeInEffect: syncModeToWire[o.clusterSyncModeInEffect ?? o.clusterSyncMode],
      desiredDigest: sync.desiredDigest ?? '',
      leaseDurationMs: o.clusterLeaseDurationMs,
      agentVersion: o.agentVersion,
      publicKey: Buffer.alloc(0),
      cacheQuarantines: this.unreportedQuarantines,
      protocolVersion: offer.protocolVersion,
      minProtocolVersion: offer.minProtocolVersion,
      features: [...offer.features],
    };
    const key = { publicKeyDer: Buffer.from(identity.publicKey, 'base64'), privateKeyDer: Buffer.from(identity.privateKey, 'base64') };
    return { frame: { $case: 'hello', value: signHello(hello, key, this.deps.clock.now()) } };
  }

  /**
   * Takes a welcome: checks the protocol the hub chose, stores a new
   * credential, adopts the trust bundle. Returns what the session speaks, or
   * the error that ends it.
   */
  async welcomed(w: wire.Welcome): Promise<{ negotiated: Negotiated } | { error: HawserError }> {
    let negotiated: Negotiated;
    try {
      negotiated = acceptWelcome(localOffer(this.options.features ?? []), w);
    } catch (err) {
      return { error: toHawserError(err) };
    }
    const usedCredential = this.usesCredential();
    if (w.credential && !(await this.storeCredential(w)) && !usedCredential) {
      // Registered with the bootstrap token and the credential is not durable: not used, so
      // never a lockout. End the session and retry; the next hello re-issues (signed with our key).
      return { error: new HawserError(ErrorCode.CacheWriteFailed, `cannot store the cluster credential in ${this.deps.identityStore.path}; will retry`) };
    }
    this.unreportedQuarantines = 0;
    if (w.trustBundle) await this.adoptTrustBundle(w.trustBundle);
    return { negotiated };
  }

  /** What a session's end teaches: a refused credential sends the next hello with the bootstrap token. */
  ended(error: HawserError): void {
    const { logger } = this.deps;
    const clusterId = this.identity?.clusterId;
    if (error.code === ErrorCode.BadCredential && this.options.bootstrapToken && !this.preferBootstrap) {
      // The hub does not know (or no longer accepts) our credential, e.g. its data was reset.
      // The stored credential stays: it is replaced only once a new one is durable.
      this.preferBootstrap = true;
      logger.warn({ clusterId }, 'hub refused the cached credential; registering again with the bootstrap token and this cluster\'s key');
    }
    if (error.code === ErrorCode.KeyMismatch || error.code === ErrorCode.ClusterDeleted) {
      logger.error({ code: error.code, clusterId }, error.message);
    }
  }

  /**
   * Calls `renew` once two thirds of the credential's remaining life are
   * over, so the next hello (signed with our key) gets a renewed one.
   */
  scheduleRenewal(renew: () => void): TimerHandle | undefined {
    const expiresAt = this.identity?.credentialExpiresAtMs;
    if (!expiresAt) return undefined;
    const clock = this.deps.clock;
    const now = clock.now();
    const renewAt = now + Math.max(0, ((expiresAt - now) * 2) / 3);
    let handle: TimerHandle | undefined;
    const arm = () => {
      const left = renewAt - clock.now();
      if (left <= 0) return renew();
      // Node fires a timer over 2^31-1 ms at once: wait in steps.
      handle = clock.setTimeout(arm, Math.min(left, 2 ** 31 - 1));
    };
    arm();
    return { cancel: () => handle?.cancel() };
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
    const { identityStore, logger } = this.deps;
    try {
      await identityStore.save(next);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.CacheWriteFailed);
      logger.error({ code: error.code, path: identityStore.path }, `cannot store the new cluster credential; keeping the previous one: ${error.message}`);
      return false;
    }
    this.identity = next;
    this.preferBootstrap = false;
    return true;
  }

  /** The bundle stored by an earlier run; a damaged one is logged and left out (--parent-ca-file still holds). */
  private async loadTrustBundle(): Promise<void> {
    const trust = this.deps.trust;
    if (!trust) return;
    const loaded = await trust.store.load();
    if (loaded.kind === 'damaged') {
      this.deps.logger.error(
        { code: ErrorCode.InvalidTrustBundle, path: trust.store.path, reason: boundedText(loaded.reason, 256) },
        'stored trust bundle is damaged; trusting --parent-ca-file only until the hub sends it again',
      );
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
  async adoptTrustBundle(bundle: wire.TrustBundle): Promise<void> {
    const { trust, logger } = this.deps;
    if (!trust) return;
    const version = Number(bundle.version);
    const current = this.trustBundle;
    if (current && current.version === version && current.caPems.join('') === bundle.caPems.join('')) return;
    // The hub this stream verified is the authority, also when its version went back (its data dir
    // was restored or reset): refusing would leave the agent unable to follow its next rotation.
    if (current && version < current.version) {
      logger.warn({ version, stored: current.version }, 'hub sent a trust bundle with a lower version than the stored one; adopting it (the hub was restored or reset?)');
    }
    let fingerprints: string[];
    try {
      fingerprints = validateTrustBundle(bundle.caPems).map((c) => c.fingerprint);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.InvalidTrustBundle);
      logger.error({ code: error.code, version }, boundedText(error.message, 256));
      return;
    }
    const next: StoredTrustBundle = { version, caPems: [...bundle.caPems] };
    try {
      await trust.store.save(next);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.CacheWriteFailed);
      logger.error({ code: error.code, path: trust.store.path, version }, `cannot store the hub's trust bundle; keeping the previous trust: ${boundedText(error.message, 256)}`);
      return;
    }
    trust.apply(next.caPems);
    this.trustBundle = next;
    logger.info({ version, cas: fingerprints, path: trust.store.path }, 'trust bundle stored; later dials trust it');
  }
}
