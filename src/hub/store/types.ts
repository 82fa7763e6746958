import type { ClusterRegistrationRequest, ManagedCluster, ObjectMeta } from '../../api/index.js';

// The hub store's one interface. EmbeddedStore (LevelDB) implements it today,
// a Kubernetes-backed store later; SealingStore wraps either to encrypt
// Secrets at rest. test/unit/store-conformance.ts is the contract.

export interface ClusterCredentialRecord {
  /** sha256 of the credential; the credential itself is never stored. */
  hash: string;
  clusterId: string;
  clusterName: string;
  issuedAt: string;
  /** After this the credential is refused; the agent re-issues with the bootstrap token and its key. */
  expiresAt?: string;
  /** Set once the agent has connected with it: from then on only it admits the cluster. */
  confirmedAt?: string;
}

/** Any Kubernetes-shaped object; the API layer narrows the entries of StoredKinds to its own types. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

/** Types a kind's entry in storedKindTypes (a value for the runtime list, a type for the compiler). */
const holds = <T>(): T => undefined as T;

/** What the store holds, by kind. Adding a kind is one line here. */
export const storedKindTypes = {
  ManagedCluster: holds<ManagedCluster>(),
  ClusterRegistrationRequest: holds<ClusterRegistrationRequest>(),
  ClusterCredential: holds<ClusterCredentialRecord>(),
  Subscription: holds<KubeObject>(),
  Description: holds<KubeObject>(),
  Localization: holds<KubeObject>(),
  Globalization: holds<KubeObject>(),
  Base: holds<KubeObject>(),
  Manifest: holds<KubeObject>(),
  /** Native objects that Subscriptions feed by name, any apiVersion/kind: templates, never run on the hub. */
  Feed: holds<KubeObject>(),
  /** Per cluster (in its dedicated namespace, named after it): what its agent last applied, from its ApplyReports. */
  ClusterSyncStatus: holds<KubeObject>(),
};
export type StoredKinds = { [K in keyof typeof storedKindTypes]: (typeof storedKindTypes)[K] };
export type StoredKind = keyof StoredKinds;
export const storedKinds = Object.keys(storedKindTypes) as readonly StoredKind[];

/**
 * Names an object within its kind. A namespace of '' or undefined means
 * cluster-scoped. A bare string is a cluster-scoped name.
 */
export interface ObjectKey {
  namespace?: string;
  name: string;
}
/** Feeds are keyed by the object's own apiVersion and kind as well. */
export interface FeedKey extends ObjectKey {
  apiVersion: string;
  kind: string;
}
export type KeyOf<K extends StoredKind> = K extends 'Feed' ? FeedKey : ObjectKey | string;
/** A key as the store hands it back: namespace omitted when cluster-scoped. */
export type StoredKeyOf<K extends StoredKind> = K extends 'Feed' ? FeedKey : ObjectKey;

/**
 * resourceVersion: a decimal string. One counter for the whole store: every
 * written object gets a larger one than anything before it (also within a
 * batch, in op order), never reused, persisted. Compare as numbers
 * (compareResourceVersions), never as strings. "0" is the empty store.
 * (EmbeddedStore counts +1 per written object.)
 */
export type ResourceVersion = string;

/** An object and the version that wrote it. Objects with `metadata` also carry it in metadata.resourceVersion. */
export interface Entry<K extends StoredKind> {
  key: StoredKeyOf<K>;
  object: StoredKinds[K];
  resourceVersion: ResourceVersion;
}

/** Compare-and-swap condition: fails with HAWSER_STORE_CONFLICT when not met. */
export type Precondition = { resourceVersion: ResourceVersion } | { absent: true };

export interface WriteOptions {
  /** `false` may lose the write on a crash (status the next heartbeat repeats); default true. */
  durable?: boolean;
}

export type StoreOp = {
  [K in StoredKind]:
    | { op: 'put'; kind: K; key: KeyOf<K>; value: StoredKinds[K]; expect?: Precondition }
    | { op: 'delete'; kind: K; key: KeyOf<K>; expect?: Precondition };
}[StoredKind];

export interface ListOptions {
  /** Only this namespace ('' = cluster-scoped objects only). */
  namespace?: string;
}
export interface ListResult<K extends StoredKind> {
  /** Key order. */
  items: Array<Entry<K>>;
  /** The store's version when listed: watch from it to miss nothing and see nothing twice. */
  resourceVersion: ResourceVersion;
}

export interface WatchOptions extends ListOptions {
  /** Events after this version. Older than the kept history: HAWSER_RESOURCE_VERSION_TOO_OLD (relist). */
  resourceVersion: ResourceVersion;
  /** Only names starting with this. */
  namePrefix?: string;
  /** Aborting ends the iteration (done, no error). */
  signal?: AbortSignal;
}
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface WatchEvent<K extends StoredKind> {
  type: WatchEventType;
  kind: K;
  key: StoredKeyOf<K>;
  /** For DELETED: the last state, with the deletion's version. */
  object: StoredKinds[K];
  resourceVersion: ResourceVersion;
}

export interface StoreInfo {
  /** Random id made with the store; a restored backup keeps it (its version then goes backwards). */
  uid: string;
  /** The latest version written. */
  resourceVersion: ResourceVersion;
}

export interface HubStore {
  /** The object, with metadata.resourceVersion set when it has metadata. */
  get<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<StoredKinds[K] | undefined>;
  /** The object with its key and version (for records without metadata). */
  read<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<Entry<K> | undefined>;
  /** A consistent snapshot of the kind, with the version it reflects. */
  list<K extends StoredKind>(kind: K, options?: ListOptions): Promise<ListResult<K>>;
  /** Returns the new version. A failed precondition: HAWSER_STORE_CONFLICT, nothing written. */
  put<K extends StoredKind>(
    kind: K,
    key: KeyOf<K>,
    value: StoredKinds[K],
    options?: WriteOptions & { expect?: Precondition },
  ): Promise<ResourceVersion>;
  /** Returns the deletion's version; undefined (and no event) when there was nothing to delete. */
  delete<K extends StoredKind>(kind: K, key: KeyOf<K>, options?: WriteOptions & { expect?: Precondition }): Promise<ResourceVersion | undefined>;
  /**
   * All or nothing, in order (a later op sees an earlier one). Each op that
   * writes takes a new, larger version; returns them per op (undefined for a
   * delete of nothing). Any failed precondition: HAWSER_STORE_CONFLICT,
   * nothing written, no event.
   */
  batch(ops: readonly StoreOp[], options?: WriteOptions): Promise<Array<ResourceVersion | undefined>>;
  /**
   * Changes to a kind after options.resourceVersion, in version order, until
   * the signal aborts. Closing the store ends it with HAWSER_STORE_CLOSED.
   */
  watch<K extends StoredKind>(kind: K, options: WatchOptions): AsyncIterable<WatchEvent<K>>;
  info(): Promise<StoreInfo>;
  close(): Promise<void>;
}
