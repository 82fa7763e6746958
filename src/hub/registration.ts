import {
  type ClusterRegistrationInput,
  type ClusterRegistrationRequest,
  clusterIdLabel,
  clusterNameLabel,
  clustersApiVersion,
  dedicatedNamespaceFor,
  isUuid,
  type ManagedCluster,
  registrationProblems,
  registrationRequestName,
  type SyncMode,
  quoteBounded,
} from '../api/index.js';
import {
  type Clock,
  ErrorCode,
  HawserError,
  helloProofSubject,
  proofSignatureValid,
  publicKeyFingerprint,
  type TimerHandle,
  wire,
} from '../tunnel/index.js';
import type { KeyedMutex } from './mutex.js';
import type { ClusterCredentialRecord, HubStore } from './store.js';
import { generateCredential, hashSecret, tokenMatches } from './tokens.js';

// Registration as Clusternet does it, secured as kubelet TLS bootstrap is: a
// bootstrap token buys a ClusterRegistrationRequest; approval makes a
// ManagedCluster with its own namespace and a per-cluster credential. The
// agent's Ed25519 key, bound to the cluster id by the first request, is the
// cluster's identity: every hello proves possession of it, and the bootstrap
// token re-issues a credential for a known cluster id only with that key.
// Losing the key needs an operator: `hawser delete cluster`, then a fresh
// registration.

export type Admission =
  | { kind: 'admitted'; cluster: ManagedCluster; credential?: string; credentialExpiresAtMs?: number }
  | { kind: 'pending'; request: ClusterRegistrationRequest };

const syncModeFromWire: Record<number, SyncMode | undefined> = {
  [wire.SyncMode.SYNC_MODE_UNSPECIFIED]: 'Dual',
  [wire.SyncMode.SYNC_MODE_PUSH]: 'Push',
  [wire.SyncMode.SYNC_MODE_PULL]: 'Pull',
  [wire.SyncMode.SYNC_MODE_DUAL]: 'Dual',
};

export interface RegistrarLimits {
  /** Pending (undecided) requests one bootstrap token may hold. */
  maxPendingPerToken: number;
  /** Pending requests in total. */
  maxPendingTotal: number;
  /** A pending request older than this is dropped, so a squatted name comes free. */
  pendingRegistrationTtlMs: number;
  /** Lifetime of an issued credential; the hub renews it in the last third. */
  credentialTtlMs: number;
  /** How far a hello's signed time may be from the hub's clock. */
  helloClockSkewMs: number;
}

export const defaultRegistrarLimits: RegistrarLimits = {
  maxPendingPerToken: 100,
  maxPendingTotal: 1_000,
  pendingRegistrationTtlMs: 24 * 3_600_000,
  credentialTtlMs: 90 * 24 * 3_600_000,
  helloClockSkewMs: 5 * 60_000,
};

export interface RegistrarOptions extends RegistrarLimits {
  bootstrapTokens: () => readonly string[];
  autoApprove: boolean;
  /** Called after an operator deleted a cluster, so its live session is closed. */
  onClusterDeleted?: (clusterName: string) => void;
}

/** Credentials kept per cluster: the newest ones, so a re-issue the agent failed to store does not strand it. */
const credentialsKeptPerCluster = 3;
/** Nonces remembered at most; beyond this (a flood) hellos are refused until the window moves on. */
const maxRememberedNonces = 100_000;

interface PendingEntry {
  clusterName: string;
  tokenId: string;
  createdAtMs: number;
}

/** In-memory indexes over the store, so a registration costs O(1) reads, not a scan. */
interface RegistrationIndex {
  /** clusterName -> clusterId of every request not denied. */
  requestedNames: Map<string, string>;
  /** clusterId -> hashes of its credentials. */
  credentials: Map<string, Set<string>>;
  /** requestName -> what the pending caps and TTL need. */
  pending: Map<string, PendingEntry>;
}

/** What an operator action did, for the audit line. */
export interface OperatorAction {
  actor: string;
  action: 'approve' | 'deny' | 'delete-cluster';
  request?: string;
  cluster?: string;
  clusterId?: string;
  credentialsRevoked?: number;
}

/** The public part of a kubeadm-style token ("abcdef" of "abcdef.0123..."); never the secret. */
function tokenId(token: string): string {
  const dot = token.indexOf('.');
  return dot > 0 ? token.slice(0, dot) : hashSecret(token).slice(0, 12);
}

export class Registrar {
  /** requestName -> wake-ups of agents waiting on that request; each removed on abort. */
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly expiryTimers = new Map<string, TimerHandle>();
  private index: Promise<RegistrationIndex> | undefined;
  /** nonce (hex) -> when it may be forgotten. Insertion order is expiry order. */
  private readonly seenNonces = new Map<string, number>();
  /** Hellos whose proof this hub already checked: the same hello re-admitted after approval. */
  private readonly provenHellos = new WeakSet<wire.Hello>();
  /** Hellos answered "pending": admitted again once their request is decided, expired or deleted. */
  private readonly pendingHellos = new WeakSet<wire.Hello>();

  constructor(
    private readonly store: HubStore,
    private readonly mutex: KeyedMutex,
    private readonly clock: Clock,
    private readonly options: RegistrarOptions,
  ) {}

  private loadIndex(): Promise<RegistrationIndex> {
    // A failed load is not cached: the next registration tries again.
    this.index ??= this.readIndex().catch((err: unknown) => {
      this.index = undefined;
      throw err;
    });
    return this.index;
  }

  private async readIndex(): Promise<RegistrationIndex> {
    const requestedNames = new Map<string, string>();
    const pending = new Map<string, PendingEntry>();
    for (const { object: r } of (await this.store.list('ClusterRegistrationRequest')).items) {
      if (r.status.result !== 'Denied') requestedNames.set(r.spec.clusterName, r.spec.clusterId);
      if (r.status.result !== 'Approved' && r.status.result !== 'Denied') pending.set(r.metadata.name, this.pendingEntry(r));
    }
    const credentials = new Map<string, Set<string>>();
    for (const { object: c } of (await this.store.list('ClusterCredential')).items) {
      const set = credentials.get(c.clusterId) ?? new Set<string>();
      set.add(c.hash);
      credentials.set(c.clusterId, set);
    }
    return { requestedNames, credentials, pending };
  }

  private pendingEntry(r: ClusterRegistrationRequest): PendingEntry {
    const created = Date.parse(r.metadata.creationTimestamp ?? '');
    return {
      clusterName: r.spec.clusterName,
      tokenId: r.spec.bootstrapTokenId ?? '',
      createdAtMs: Number.isNaN(created) ? this.clock.now() : created,
    };
  }

  /** Decides what a Hello is worth. Throws HawserError when it is refused. */
  async admit(hello: wire.Hello): Promise<Admission> {
    if (!isUuid(hello.clusterId)) {
      throw new HawserError(ErrorCode.InvalidRegistration, `clusterId: ${quoteBounded(hello.clusterId)} is not a lower-case UUID`);
    }
    if (hello.auth?.$case === 'clusterCredential') {
      this.checkProof(hello);
      return this.admitWithCredential(hello, hello.auth.value);
    }
    if (hello.auth?.$case === 'bootstrapToken') {
      if (!tokenMatches(hello.auth.value, this.options.bootstrapTokens())) {
        throw new HawserError(ErrorCode.BadBootstrapToken, 'bootstrap token is not accepted by this hub');
      }
      this.checkProof(hello);
      return this.admitWithBootstrapToken(hello, hello.auth.value);
    }
    throw new HawserError(ErrorCode.BadBootstrapToken, 'hello carries neither a bootstrap token nor a cluster credential');
  }

  /** Proof of possession of the hello's key: valid signature, fresh time, unseen nonce. */
  private checkProof(hello: wire.Hello): void {
    if (this.provenHellos.has(hello)) return;
    const subject = helloProofSubject(hello);
    const proof = hello.proof;
    if (!subject || hello.publicKey.length === 0 || !proof) {
      throw new HawserError(ErrorCode.BadSignature, 'hello carries no public key and proof of possession (agent too old?)');
    }
    if (!proofSignatureValid(subject, proof)) {
      throw new HawserError(ErrorCode.BadSignature, 'hello signature does not verify with the public key it carries');
    }
    const now = this.clock.now();
    const skewMs = this.options.helloClockSkewMs;
    if (Math.abs(proof.signedAtUnixMs - now) > skewMs) {
      throw new HawserError(
        ErrorCode.BadSignature,
        `hello was signed at ${new Date(proof.signedAtUnixMs).toISOString()}, more than ${skewMs}ms from the hub's time ${new Date(now).toISOString()}: check the agent's clock`,
      );
    }
    for (const [nonce, forgetAt] of this.seenNonces) {
      if (forgetAt > now) break;
      this.seenNonces.delete(nonce);
    }
    const nonce = Buffer.from(proof.nonce).toString('hex');
    if (nonce.length < 32) throw new HawserError(ErrorCode.BadSignature, 'hello proof nonce is shorter than 16 bytes');
    if (this.seenNonces.has(nonce)) {
      throw new HawserError(ErrorCode.SignatureReplayed, 'hello proof was already used (a replayed hello)');
    }
    if (this.seenNonces.size >= maxRememberedNonces) {
      throw new HawserError(ErrorCode.Unavailable, 'too many hellos in the replay window; retry later', { retryAfterMs: skewMs });
    }
    // Remembered until a hello signed at the same time falls out of the window.
    this.seenNonces.set(nonce, now + 2 * skewMs);
    this.provenHellos.add(hello);
  }

  private async admitWithCredential(hello: wire.Hello, credential: string): Promise<Admission> {
    const clusterId = hello.clusterId;
    const hash = hashSecret(credential);
    return this.mutex.run(`cluster-id/${clusterId}`, async () => {
      const record = await this.store.get('ClusterCredential', hash);
      if (!record) {
        throw new HawserError(ErrorCode.BadCredential, 'cluster credential is not known to this hub (revoked, replaced, or issued by another hub)');
      }
      if (record.clusterId !== clusterId) {
        throw new HawserError(
          ErrorCode.CredentialClusterMismatch,
          `cluster credential was issued to a different cluster, not to cluster id ${clusterId}`,
        );
      }
      const now = this.clock.now();
      const expiresAtMs = record.expiresAt ? Date.parse(record.expiresAt) : Infinity;
      if (now >= expiresAtMs) {
        throw new HawserError(ErrorCode.BadCredential, `cluster credential expired at ${record.expiresAt}; the agent re-issues it with the bootstrap token and its key`);
      }
      const cluster = await this.store.get('ManagedCluster', record.clusterName);
      if (!cluster) {
        throw new HawserError(ErrorCode.BadCredential, `cluster "${record.clusterName}" no longer exists on this hub`);
      }
      await this.bindOrMatchKey(hello, cluster);
      if (!record.confirmedAt) {
        await this.store.put('ClusterCredential', hash, { ...record, confirmedAt: this.isoNow() });
      }
      // Renewal: in the last third of its life the hello (signed with the key) gets a fresh credential.
      if (expiresAtMs - now < this.options.credentialTtlMs / 3) {
        return { kind: 'admitted', cluster, ...(await this.issueCredential(cluster)) };
      }
      return { kind: 'admitted', cluster };
    });
  }

  /**
   * The credential path: the cluster's key must be the hello's. A cluster
   * registered before keys existed gets the key of its first signed hello
   * (the credential vouches for it).
   */
  private async bindOrMatchKey(hello: wire.Hello, cluster: ManagedCluster): Promise<void> {
    const requestName = registrationRequestName(cluster.spec.clusterId);
    const request = await this.store.get('ClusterRegistrationRequest', requestName);
    const key = Buffer.from(hello.publicKey).toString('base64');
    if (request?.spec.publicKey) {
      if (request.spec.publicKey !== key) throw this.keyMismatch(cluster.spec.clusterId, request, hello);
      return;
    }
    const fingerprint = publicKeyFingerprint(hello.publicKey);
    if (request) {
      await this.store.put('ClusterRegistrationRequest', requestName, {
        ...request,
        spec: { ...request.spec, publicKey: key, publicKeyFingerprint: fingerprint },
      });
    }
    await this.store.put('ManagedCluster', cluster.metadata.name, { ...cluster, spec: { ...cluster.spec, publicKeyFingerprint: fingerprint } });
    cluster.spec.publicKeyFingerprint = fingerprint;
  }

  private keyMismatch(clusterId: string, request: ClusterRegistrationRequest, hello: wire.Hello): HawserError {
    return new HawserError(
      ErrorCode.KeyMismatch,
      `cluster id ${clusterId} is bound to key ${request.spec.publicKeyFingerprint ?? '?'}, but this hello is signed by key ${publicKeyFingerprint(hello.publicKey)}; ` +
        `if the agent lost its key, an operator runs: hawser delete cluster ${request.spec.clusterName}`,
    );
  }

  private async admitWithBootstrapToken(hello: wire.Hello, token: string): Promise<Admission> {
    const reg = hello.registration;
    const input: ClusterRegistrationInput = {
      clusterId: hello.clusterId,
      clusterName: reg?.name ?? '',
      clusterType: reg?.clusterType || 'EdgeCluster',
      clusterLabels: reg?.labels ?? {},
      syncMode: syncModeFromWire[reg?.syncMode ?? 0] ?? ('unknown' as SyncMode),
    };
    if (reg?.namespace) input.clusterNamespace = reg.namespace;
    const problems = registrationProblems(input);
    if (problems.length > 0) {
      throw new HawserError(ErrorCode.InvalidRegistration, `invalid registration: ${problems.join('; ')}`);
    }
    // Name checks and creation for one name must not interleave.
    return this.mutex.run(`cluster-name/${input.clusterName}`, () =>
      this.mutex.run(`cluster-id/${input.clusterId}`, () => this.register(input, hello, tokenId(token))),
    );
  }

  /** Drops pending requests older than the TTL, freeing their names. */
  private async expirePending(index: RegistrationIndex): Promise<void> {
    const oldest = this.clock.now() - this.options.pendingRegistrationTtlMs;
    for (const [requestName, entry] of index.pending) {
      if (entry.createdAtMs > oldest) continue;
      const current = await this.store.get('ClusterRegistrationRequest', requestName);
      if (current && current.status.result !== 'Approved' && current.status.result !== 'Denied') {
        await this.store.delete('ClusterRegistrationRequest', requestName);
        if (index.requestedNames.get(entry.clusterName) === current.spec.clusterId) index.requestedNames.delete(entry.clusterName);
      }
      index.pending.delete(requestName);
      this.wake(requestName);
    }
  }

  private async register(input: ClusterRegistrationInput, hello: wire.Hello, fromToken: string): Promise<Admission> {
    const requestName = registrationRequestName(input.clusterId);
    const index = await this.loadIndex();
    await this.expirePending(index);
    const key = Buffer.from(hello.publicKey).toString('base64');

    let request = await this.store.get('ClusterRegistrationRequest', requestName);
    if (request?.spec.publicKey && request.spec.publicKey !== key) throw this.keyMismatch(input.clusterId, request, hello);

    const taken = await this.store.get('ManagedCluster', input.clusterName);
    if (taken && taken.spec.clusterId !== input.clusterId) {
      throw new HawserError(ErrorCode.ClusterNameTaken, `cluster name "${input.clusterName}" is already used by another cluster`);
    }
    const requester = index.requestedNames.get(input.clusterName);
    if (requester !== undefined && requester !== input.clusterId) {
      throw new HawserError(ErrorCode.ClusterNameTaken, `cluster name "${input.clusterName}" is already requested by another cluster`);
    }

    if (request?.status.result === 'Denied') {
      throw new HawserError(ErrorCode.RegistrationDenied, `registration request ${requestName} was denied`);
    }
    if (request && !request.spec.publicKey) {
      // Registered before keys existed: the key of the first signed hello is bound, unless the cluster already proved itself.
      for (const hash of index.credentials.get(input.clusterId) ?? []) {
        if ((await this.store.get('ClusterCredential', hash))?.confirmedAt) {
          throw new HawserError(
            ErrorCode.AlreadyRegistered,
            `cluster id ${input.clusterId} is already registered as "${request.spec.clusterName}"; it must present its cluster credential`,
          );
        }
      }
      request = { ...request, spec: { ...request.spec, publicKey: key, publicKeyFingerprint: publicKeyFingerprint(hello.publicKey) } };
      await this.store.put('ClusterRegistrationRequest', requestName, request);
    }
    if (request && request.spec.clusterName !== input.clusterName) {
      const existing = await this.store.get('ManagedCluster', request.spec.clusterName);
      if (existing) {
        throw new HawserError(
          ErrorCode.AlreadyRegistered,
          `cluster id ${input.clusterId} is already registered as "${request.spec.clusterName}"`,
        );
      }
    }
    if (!request) {
      if (this.pendingHellos.has(hello)) {
        throw new HawserError(
          ErrorCode.RegistrationExpired,
          `registration request ${requestName} no longer exists (it expired undecided, or an operator deleted it); the agent will request again`,
        );
      }
      request = await this.createRequest(input, hello, fromToken, index);
    }
    if (request.status.result !== 'Approved') {
      this.pendingHellos.add(hello);
      this.armExpiry(requestName, index);
      return { kind: 'pending', request };
    }

    let cluster = await this.store.get('ManagedCluster', request.spec.clusterName);
    if (!cluster) cluster = await this.createCluster(request);
    // The key is proven: re-issuing is safe. Older credentials stay valid until
    // the agent has stored the new one and they age out.
    return { kind: 'admitted', cluster, ...(await this.issueCredential(cluster)) };
  }

  private async createRequest(
    input: ClusterRegistrationInput,
    hello: wire.Hello,
    fromToken: string,
    index: RegistrationIndex,
  ): Promise<ClusterRegistrationRequest> {
    const requestName = registrationRequestName(input.clusterId);
    if (!this.options.autoApprove) {
      let fromThisToken = 0;
      for (const entry of index.pending.values()) if (entry.tokenId === fromToken) fromThisToken++;
      if (fromThisToken >= this.options.maxPendingPerToken) {
        throw new HawserError(
          ErrorCode.TooManyPendingRegistrations,
          `bootstrap token ${fromToken} already has ${fromThisToken} pending registration requests (limit ${this.options.maxPendingPerToken}); approve or deny some first`,
          { retryAfterMs: 60_000 },
        );
      }
      if (index.pending.size >= this.options.maxPendingTotal) {
        throw new HawserError(
          ErrorCode.TooManyPendingRegistrations,
          `the hub already has ${index.pending.size} pending registration requests (limit ${this.options.maxPendingTotal}); approve or deny some first`,
          { retryAfterMs: 60_000 },
        );
      }
    }
    const request: ClusterRegistrationRequest = {
      apiVersion: clustersApiVersion,
      kind: 'ClusterRegistrationRequest',
      metadata: {
        name: requestName,
        labels: { [clusterIdLabel]: input.clusterId, [clusterNameLabel]: input.clusterName },
        creationTimestamp: this.isoNow(),
      },
      spec: {
        clusterId: input.clusterId,
        clusterType: input.clusterType,
        clusterName: input.clusterName,
        clusterLabels: input.clusterLabels,
        syncMode: input.syncMode,
        ...(input.clusterNamespace ? { clusterNamespace: input.clusterNamespace } : {}),
        publicKey: Buffer.from(hello.publicKey).toString('base64'),
        publicKeyFingerprint: publicKeyFingerprint(hello.publicKey),
        bootstrapTokenId: fromToken,
      },
      status: { result: 'Pending' },
    };
    if (this.options.autoApprove) request.status = this.approvedStatus(request);
    await this.store.put('ClusterRegistrationRequest', requestName, request);
    index.requestedNames.set(input.clusterName, input.clusterId);
    if (request.status.result === 'Pending') index.pending.set(requestName, this.pendingEntry(request));
    return request;
  }

  /** A fresh credential for the cluster; keeps only the newest few. */
  private async issueCredential(cluster: ManagedCluster): Promise<{ credential: string; credentialExpiresAtMs: number }> {
    const index = await this.loadIndex();
    const clusterId = cluster.spec.clusterId;
    const records: ClusterCredentialRecord[] = [];
    for (const hash of index.credentials.get(clusterId) ?? []) {
      const record = await this.store.get('ClusterCredential', hash);
      if (record) records.push(record);
    }
    records.sort((a, b) => a.issuedAt.localeCompare(b.issuedAt));
    const hashes = new Set(records.map((r) => r.hash));
    for (const old of records.slice(0, Math.max(0, records.length - (credentialsKeptPerCluster - 1)))) {
      await this.store.delete('ClusterCredential', old.hash);
      hashes.delete(old.hash);
    }
    const credential = generateCredential();
    const hash = hashSecret(credential);
    const credentialExpiresAtMs = this.clock.now() + this.options.credentialTtlMs;
    await this.store.put('ClusterCredential', hash, {
      hash,
      clusterId,
      clusterName: cluster.metadata.name,
      issuedAt: this.isoNow(),
      expiresAt: new Date(credentialExpiresAtMs).toISOString(),
    });
    hashes.add(hash);
    index.credentials.set(clusterId, hashes);
    return { credential, credentialExpiresAtMs };
  }

  private approvedStatus(request: ClusterRegistrationRequest): ClusterRegistrationRequest['status'] {
    return {
      result: 'Approved',
      managedClusterName: request.spec.clusterName,
      dedicatedNamespace: dedicatedNamespaceFor(request.spec.clusterId),
    };
  }

  private async createCluster(request: ClusterRegistrationRequest): Promise<ManagedCluster> {
    const cluster: ManagedCluster = {
      apiVersion: clustersApiVersion,
      kind: 'ManagedCluster',
      metadata: {
        name: request.spec.clusterName,
        namespace: dedicatedNamespaceFor(request.spec.clusterId),
        uid: request.spec.clusterId,
        labels: {
          ...request.spec.clusterLabels,
          [clusterIdLabel]: request.spec.clusterId,
          [clusterNameLabel]: request.spec.clusterName,
        },
        creationTimestamp: this.isoNow(),
      },
      spec: {
        clusterId: request.spec.clusterId,
        clusterType: request.spec.clusterType,
        syncMode: request.spec.syncMode,
        taints: [],
        ...(request.spec.publicKeyFingerprint ? { publicKeyFingerprint: request.spec.publicKeyFingerprint } : {}),
      },
      status: { conditions: [] },
    };
    await this.store.put('ManagedCluster', cluster.metadata.name, cluster);
    return cluster;
  }

  /** The request named `name`, by request name or by cluster name. */
  private async findRequest(name: string): Promise<ClusterRegistrationRequest> {
    const byName = await this.store.get('ClusterRegistrationRequest', name);
    if (byName) return byName;
    const requests = (await this.store.list('ClusterRegistrationRequest')).items.map((e) => e.object);
    const found = requests.find((r) => r.spec.clusterName === name && r.status.result !== 'Denied') ?? requests.find((r) => r.spec.clusterName === name);
    if (!found) throw new HawserError(ErrorCode.NotFound, `no cluster registration request named ${quoteBounded(name)}`);
    return found;
  }

  /**
   * An operator's decision on a request (by request name or cluster name),
   * made under the cluster id's lock on the request as stored now; wakes the
   * agent waiting on it and returns the audit record.
   */
  private async decide(
    name: string,
    actor: string,
    action: 'approve' | 'deny',
    apply: (current: ClusterRegistrationRequest, index: RegistrationIndex) => Promise<ClusterRegistrationRequest>,
  ): Promise<{ request: ClusterRegistrationRequest; audit: OperatorAction }> {
    const found = await this.findRequest(name);
    const index = await this.loadIndex();
    const decided = await this.mutex.run(`cluster-id/${found.spec.clusterId}`, async () => {
      const current = await this.store.get('ClusterRegistrationRequest', found.metadata.name);
      if (!current) throw new HawserError(ErrorCode.NotFound, `registration request ${found.metadata.name} no longer exists (expired or deleted)`);
      return apply(current, index);
    });
    this.wake(decided.metadata.name);
    return {
      request: decided,
      audit: { actor, action, request: decided.metadata.name, cluster: decided.spec.clusterName, clusterId: decided.spec.clusterId },
    };
  }

  /** Approves by request name or by cluster name; wakes an agent that is waiting. */
  approve(name: string, actor: string): Promise<{ request: ClusterRegistrationRequest; audit: OperatorAction }> {
    return this.decide(name, actor, 'approve', async (current, index) => {
      if (current.status.result === 'Approved') return current;
      if (current.status.result === 'Denied') {
        throw new HawserError(ErrorCode.RegistrationDenied, `registration request ${current.metadata.name} was denied; delete it with: hawser delete cluster ${current.spec.clusterName}`);
      }
      const next = { ...current, status: this.approvedStatus(current) };
      await this.store.put('ClusterRegistrationRequest', current.metadata.name, next);
      index.pending.delete(current.metadata.name);
      if (!(await this.store.get('ManagedCluster', next.spec.clusterName))) await this.createCluster(next);
      return next;
    });
  }

  /** Denies a pending request: the name comes free, and a waiting agent is told. */
  deny(name: string, actor: string): Promise<{ request: ClusterRegistrationRequest; audit: OperatorAction }> {
    return this.decide(name, actor, 'deny', async (current, index) => {
      if (current.status.result === 'Denied') return current;
      if (current.status.result === 'Approved') {
        throw new HawserError(
          ErrorCode.AlreadyRegistered,
          `registration request ${current.metadata.name} is already approved; to remove the cluster run: hawser delete cluster ${current.spec.clusterName}`,
        );
      }
      const next: ClusterRegistrationRequest = { ...current, status: { result: 'Denied', errorMessage: `denied by ${actor}` } };
      await this.store.put('ClusterRegistrationRequest', current.metadata.name, next);
      index.pending.delete(current.metadata.name);
      if (index.requestedNames.get(current.spec.clusterName) === current.spec.clusterId) index.requestedNames.delete(current.spec.clusterName);
      return next;
    });
  }

  /**
   * Deletes a cluster: its credentials, its ManagedCluster, its request and
   * so its key binding; the name comes free and the live session is closed.
   * The recovery path for an agent that lost its cache (and key): after
   * this, its fresh registration waits for an operator's decision again.
   */
  async deleteCluster(name: string, actor: string): Promise<{ audit: OperatorAction }> {
    const cluster = await this.store.get('ManagedCluster', name);
    const request = cluster
      ? await this.store.get('ClusterRegistrationRequest', registrationRequestName(cluster.spec.clusterId))
      : (await this.store.list('ClusterRegistrationRequest')).items.map((e) => e.object).find((r) => r.spec.clusterName === name);
    const clusterId = cluster?.spec.clusterId ?? request?.spec.clusterId;
    if (!clusterId) throw new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(name)}`);
    const index = await this.loadIndex();
    const revoked = await this.mutex.run(`cluster-name/${name}`, () =>
      this.mutex.run(`cluster-id/${clusterId}`, async () => {
        let count = 0;
        const hashes = new Set(index.credentials.get(clusterId) ?? []);
        for (const { object: c } of (await this.store.list('ClusterCredential')).items) if (c.clusterId === clusterId) hashes.add(c.hash);
        for (const hash of hashes) {
          await this.store.delete('ClusterCredential', hash);
          count++;
        }
        index.credentials.delete(clusterId);
        const requestName = registrationRequestName(clusterId);
        await this.store.delete('ClusterRegistrationRequest', requestName);
        index.pending.delete(requestName);
        if (index.requestedNames.get(name) === clusterId) index.requestedNames.delete(name);
        if (request && index.requestedNames.get(request.spec.clusterName) === clusterId) index.requestedNames.delete(request.spec.clusterName);
        if (cluster) await this.store.delete('ManagedCluster', name);
        return count;
      }),
    );
    this.wake(registrationRequestName(clusterId));
    if (cluster) this.options.onClusterDeleted?.(name);
    return { audit: { actor, action: 'delete-cluster', cluster: name, clusterId, credentialsRevoked: revoked } };
  }

  /**
   * A pending request expires at its TTL even if no other registration sweeps
   * it: one timer per pending request, armed when an agent waits on it.
   */
  private armExpiry(requestName: string, index: RegistrationIndex): void {
    const entry = index.pending.get(requestName);
    if (!entry || this.expiryTimers.has(requestName)) return;
    const remainingMs = entry.createdAtMs + this.options.pendingRegistrationTtlMs - this.clock.now();
    // Clamped: Node fires a timer over 2^31-1 ms at once.
    const timer = this.clock.setTimeout(
      () => {
        this.expiryTimers.delete(requestName);
        void this.expireOne(requestName).catch(() => undefined);
      },
      Math.min(2 ** 31 - 1, Math.max(0, remainingMs)),
    );
    this.expiryTimers.set(requestName, timer);
  }

  /** Cancels the expiry timers (the hub is stopping). */
  close(): void {
    for (const timer of this.expiryTimers.values()) timer.cancel();
    this.expiryTimers.clear();
  }

  private wake(requestName: string): void {
    this.expiryTimers.get(requestName)?.cancel();
    this.expiryTimers.delete(requestName);
    const set = this.waiters.get(requestName);
    if (!set) return;
    this.waiters.delete(requestName);
    for (const wake of set) wake();
  }

  /**
   * Resolves true when the request is decided (approved, denied), expires or
   * is deleted: the caller admits the hello again to learn which. Resolves
   * false when the signal aborts. Nothing stays registered after either.
   */
  waitForApproval(requestName: string, signal: AbortSignal): Promise<boolean> {
    // Subscribes at once, before the request may even exist: the hub calls this
    // before admitting, so a decision that lands in between is never missed.
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const waiters = this.waiters.get(requestName) ?? new Set<() => void>();
      this.waiters.set(requestName, waiters);
      const finish = (decided: boolean) => {
        signal.removeEventListener('abort', onAbort);
        waiters.delete(onDecided);
        if (waiters.size === 0 && this.waiters.get(requestName) === waiters) this.waiters.delete(requestName);
        resolve(decided);
      };
      const onDecided = () => finish(true);
      const onAbort = () => finish(false);
      waiters.add(onDecided);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async expireOne(requestName: string): Promise<void> {
    const index = await this.loadIndex();
    const entry = index.pending.get(requestName);
    if (!entry) return;
    await this.mutex.run(`cluster-name/${entry.clusterName}`, () => this.expirePending(index));
  }

  private isoNow(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
