import { CacheCorruptError, OfflineCache } from '../cache/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import type { ClusterRegistrationRequest, ManagedCluster } from '../api/index.js';

// Where the hub keeps its objects. One interface; the embedded LevelDB store
// is the default and a Kubernetes-CRD store can implement it later.

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

export interface StoredKinds {
  ManagedCluster: ManagedCluster;
  ClusterRegistrationRequest: ClusterRegistrationRequest;
  ClusterCredential: ClusterCredentialRecord;
}
export type StoredKind = keyof StoredKinds;

export interface HubStore {
  get<K extends StoredKind>(kind: K, name: string): Promise<StoredKinds[K] | undefined>;
  list<K extends StoredKind>(kind: K): Promise<Array<StoredKinds[K]>>;
  /** `durable: false` may lose the write on a crash (status the next heartbeat repeats). */
  put<K extends StoredKind>(kind: K, name: string, value: StoredKinds[K], options?: { durable?: boolean }): Promise<void>;
  delete(kind: StoredKind, name: string): Promise<void>;
  close(): Promise<void>;
}

export class EmbeddedStore implements HubStore {
  private constructor(private readonly db: OfflineCache) {}

  /** A damaged store is refused (never quarantined: it is the fleet's registry), its files left as they were. */
  static async open(dir: string): Promise<EmbeddedStore> {
    try {
      return new EmbeddedStore(await OfflineCache.open({ dir, lruEntries: 4096 }));
    } catch (err) {
      if (!(err instanceof CacheCorruptError)) throw err;
      throw new HawserError(
        ErrorCode.CacheCorrupt,
        `hub store is damaged and was left unchanged: ${err.message}; restore ${dir} from a backup, or move it aside to start empty (agents then register again with their keys)`,
        { cause: err },
      );
    }
  }

  private key(kind: StoredKind, name: string): string {
    return `${kind}/${name}`;
  }

  get<K extends StoredKind>(kind: K, name: string): Promise<StoredKinds[K] | undefined> {
    return this.db.get<StoredKinds[K]>(this.key(kind, name));
  }

  async list<K extends StoredKind>(kind: K): Promise<Array<StoredKinds[K]>> {
    return (await this.db.entries<StoredKinds[K]>(`${kind}/`)).map(([, v]) => v);
  }

  put<K extends StoredKind>(kind: K, name: string, value: StoredKinds[K], options?: { durable?: boolean }): Promise<void> {
    return this.db.put(this.key(kind, name), value, options);
  }

  delete(kind: StoredKind, name: string): Promise<void> {
    return this.db.delete(this.key(kind, name));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
