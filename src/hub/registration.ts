import { EventEmitter } from 'node:events';
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
} from '../api/index.js';
import { ErrorCode, HawserError, type Clock, wire } from '../tunnel/index.js';
import type { KeyedMutex } from './mutex.js';
import type { HubStore } from './store.js';
import { generateCredential, hashSecret, tokenMatches } from './tokens.js';

// Registration as Clusternet does it: a bootstrap token buys a
// ClusterRegistrationRequest; approval makes a ManagedCluster with its own
// namespace and a per-cluster credential. After the agent has used that
// credential once, the bootstrap token alone can no longer act as the cluster.

export type Admission =
  | { kind: 'admitted'; cluster: ManagedCluster; credential?: string }
  | { kind: 'pending'; request: ClusterRegistrationRequest };

const syncModeFromWire: Record<number, SyncMode | undefined> = {
  [wire.SyncMode.SYNC_MODE_UNSPECIFIED]: 'Dual',
  [wire.SyncMode.SYNC_MODE_PUSH]: 'Push',
  [wire.SyncMode.SYNC_MODE_PULL]: 'Pull',
  [wire.SyncMode.SYNC_MODE_DUAL]: 'Dual',
};

export interface RegistrarOptions {
  bootstrapTokens: () => readonly string[];
  autoApprove: boolean;
}

/** In-memory indexes over the store, so a registration costs O(1) reads, not a scan. */
interface RegistrationIndex {
  /** clusterName -> clusterId of every request not denied. */
  requestedNames: Map<string, string>;
  /** clusterId -> hashes of its credentials. */
  credentials: Map<string, Set<string>>;
}

export class Registrar {
  private readonly approvals = new EventEmitter();
  private index: Promise<RegistrationIndex> | undefined;

  constructor(
    private readonly store: HubStore,
    private readonly mutex: KeyedMutex,
    private readonly clock: Clock,
    private readonly options: RegistrarOptions,
  ) {
    this.approvals.setMaxListeners(0);
  }

  private loadIndex(): Promise<RegistrationIndex> {
    this.index ??= (async () => {
      const requestedNames = new Map<string, string>();
      for (const r of await this.store.list('ClusterRegistrationRequest')) {
        if (r.status.result !== 'Denied') requestedNames.set(r.spec.clusterName, r.spec.clusterId);
      }
      const credentials = new Map<string, Set<string>>();
      for (const c of await this.store.list('ClusterCredential')) {
        const set = credentials.get(c.clusterId) ?? new Set<string>();
        set.add(c.hash);
        credentials.set(c.clusterId, set);
      }
      return { requestedNames, credentials };
    })();
    return this.index;
  }

  /** Decides what a Hello is worth. Throws HawserError when it is refused. */
  async admit(hello: wire.Hello): Promise<Admission> {
    if (!isUuid(hello.clusterId)) {
      throw new HawserError(ErrorCode.InvalidRegistration, `clusterId: "${hello.clusterId}" is not a lower-case UUID`);
    }
    if (hello.auth?.$case === 'clusterCredential') return this.admitWithCredential(hello.clusterId, hello.auth.value);
    if (hello.auth?.$case === 'bootstrapToken') return this.admitWithBootstrapToken(hello, hello.auth.value);
    throw new HawserError(ErrorCode.BadBootstrapToken, 'hello carries neither a bootstrap token nor a cluster credential');
  }

  private async admitWithCredential(clusterId: string, credential: string): Promise<Admission> {
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
      const cluster = await this.store.get('ManagedCluster', record.clusterName);
      if (!cluster) {
        throw new HawserError(ErrorCode.BadCredential, `cluster "${record.clusterName}" no longer exists on this hub`);
      }
      if (!record.confirmedAt) {
        await this.store.put('ClusterCredential', hash, { ...record, confirmedAt: this.isoNow() });
      }
      return { kind: 'admitted', cluster };
    });
  }

  private async admitWithBootstrapToken(hello: wire.Hello, token: string): Promise<Admission> {
    if (!tokenMatches(token, this.options.bootstrapTokens())) {
      throw new HawserError(ErrorCode.BadBootstrapToken, 'bootstrap token is not accepted by this hub');
    }
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
      this.mutex.run(`cluster-id/${input.clusterId}`, () => this.register(input)),
    );
  }

  private async register(input: ClusterRegistrationInput): Promise<Admission> {
    const requestName = registrationRequestName(input.clusterId);
    const taken = await this.store.get('ManagedCluster', input.clusterName);
    if (taken && taken.spec.clusterId !== input.clusterId) {
      throw new HawserError(ErrorCode.ClusterNameTaken, `cluster name "${input.clusterName}" is already used by another cluster`);
    }
    const index = await this.loadIndex();
    const requester = index.requestedNames.get(input.clusterName);
    if (requester !== undefined && requester !== input.clusterId) {
      throw new HawserError(ErrorCode.ClusterNameTaken, `cluster name "${input.clusterName}" is already requested by another cluster`);
    }

    let request = await this.store.get('ClusterRegistrationRequest', requestName);
    if (request?.status.result === 'Denied') {
      throw new HawserError(ErrorCode.RegistrationDenied, `registration request ${requestName} was denied`);
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
      request = {
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
        },
        status: { result: 'Pending' },
      };
      if (this.options.autoApprove) request.status = this.approvedStatus(request);
      await this.store.put('ClusterRegistrationRequest', requestName, request);
      index.requestedNames.set(input.clusterName, input.clusterId);
    }
    if (request.status.result !== 'Approved') return { kind: 'pending', request };

    let cluster = await this.store.get('ManagedCluster', request.spec.clusterName);
    if (!cluster) cluster = await this.createCluster(request);
    // The bootstrap token may fetch a credential only until one has been used.
    const hashes = index.credentials.get(input.clusterId) ?? new Set<string>();
    const credentials = [];
    for (const hash of hashes) {
      const record = await this.store.get('ClusterCredential', hash);
      if (record) credentials.push(record);
    }
    if (credentials.some((c) => c.confirmedAt)) {
      throw new HawserError(
        ErrorCode.AlreadyRegistered,
        `cluster id ${input.clusterId} is already registered as "${cluster.metadata.name}"; it must present its cluster credential, the bootstrap token alone is not enough`,
      );
    }
    for (const old of credentials) await this.store.delete('ClusterCredential', old.hash);
    const credential = generateCredential();
    const hash = hashSecret(credential);
    await this.store.put('ClusterCredential', hash, {
      hash,
      clusterId: input.clusterId,
      clusterName: cluster.metadata.name,
      issuedAt: this.isoNow(),
    });
    index.credentials.set(input.clusterId, new Set([hash]));
    return { kind: 'admitted', cluster, credential };
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
      },
      status: { conditions: [] },
    };
    await this.store.put('ManagedCluster', cluster.metadata.name, cluster);
    return cluster;
  }

  /**
   * Approves by request name or by cluster name; wakes an agent that is
   * waiting. `actor` is the operator who decided (the API audits the call).
   */
  async approve(name: string, _actor = 'system'): Promise<ClusterRegistrationRequest> {
    const requests = await this.store.list('ClusterRegistrationRequest');
    const found = requests.find((r) => r.metadata.name === name) ?? requests.find((r) => r.spec.clusterName === name);
    if (!found) throw new HawserError(ErrorCode.NotFound, `no cluster registration request named "${name}"`);
    const approved = await this.mutex.run(`cluster-id/${found.spec.clusterId}`, async () => {
      const current = (await this.store.get('ClusterRegistrationRequest', found.metadata.name)) ?? found;
      if (current.status.result === 'Approved') return current;
      const next = { ...current, status: this.approvedStatus(current) };
      await this.store.put('ClusterRegistrationRequest', current.metadata.name, next);
      if (!(await this.store.get('ManagedCluster', next.spec.clusterName))) await this.createCluster(next);
      return next;
    });
    this.approvals.emit(approved.metadata.name);
    return approved;
  }

  /** Resolves when the request is approved, or when the signal aborts. */
  waitForApproval(requestName: string, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const onApproved = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        this.approvals.off(requestName, onApproved);
        resolve(false);
      };
      this.approvals.once(requestName, onApproved);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private isoNow(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
