import { loadOrCreateSealKey, SealError, type SealKey } from '../../cache/index.js';
import { HawserError, isErrorCode } from '../../tunnel/index.js';
import { encodeKey } from './keys.js';
import {
  type Entry,
  type HubStore,
  type KeyOf,
  type ListOptions,
  type ListResult,
  type Precondition,
  type ResourceVersion,
  type StoreInfo,
  type StoreOp,
  type StoredKeyOf,
  type StoredKind,
  type StoredKinds,
  type WatchEvent,
  type WatchOptions,
  type WriteOptions,
  storedKinds,
} from './types.js';

// Secrets at rest: wraps any HubStore and seals, before they reach it, the
// objects that hold Secret data; opens them on the way out. The whole value
// is sealed (data, stringData and also metadata: kubectl's
// last-applied-configuration annotation repeats the data), so the inner store
// holds { sealed } and the key outside it. The object's key is the
// associated data: a sealed value copied onto another object fails to open.
//
// Sealed: v1 Secrets (any kind of the store that holds one, found by a walk of
// the object); every Description, which may carry its objects as raw bytes
// (spec.raw) a walk would not see; and every Manifest whose template is not
// one object the walk sees into (Clusternet's RawExtension, as JSON). A
// Manifest rendering a ConfigMap holds what its Feed holds, and that is stored
// plain too: sealing it cost every change a seal per cluster and every read an
// open. The cluster registry (ManagedCluster, requests, credential hashes)
// stays readable without the key.

const alwaysSealed: ReadonlySet<StoredKind> = new Set<StoredKind>(['Description']);
const maxWalkDepth = 64;

interface SealedValue {
  sealed: string;
}

function isSealed(value: unknown): value is SealedValue {
  return typeof value === 'object' && value !== null && Object.keys(value).length === 1 && typeof (value as SealedValue).sealed === 'string';
}

/**
 * Whether the value is, or holds anywhere inside it, a v1 Secret: an object
 * with metadata or data, not a reference to one (a Subscription's feed).
 */
export function holdsSecret(value: unknown, depth = 0): boolean {
  if (typeof value !== 'object' || value === null || depth > maxWalkDepth) return false;
  if (Array.isArray(value)) return value.some((v) => holdsSecret(v, depth + 1));
  const o = value as Record<string, unknown>;
  if (o.apiVersion === 'v1' && o.kind === 'Secret' && ('metadata' in o || 'data' in o || 'stringData' in o)) return true;
  return Object.values(o).some((v) => holdsSecret(v, depth + 1));
}

function translate(err: unknown): unknown {
  if (err instanceof SealError && isErrorCode(err.code)) return new HawserError(err.code, err.message, { cause: err });
  return err;
}

function withVersion<T>(value: unknown, rv: ResourceVersion): T {
  const o = value as { metadata?: Record<string, unknown> };
  if (o && typeof o === 'object' && o.metadata && typeof o.metadata === 'object') o.metadata.resourceVersion = rv;
  return o as T;
}

/** Which values to seal; the default: Descriptions, Manifests without an object template, and whatever holds a v1 Secret. */
export type SealPredicate = (kind: StoredKind, value: unknown) => boolean;
export const sealsSecrets: SealPredicate = (kind, value) => alwaysSealed.has(kind) || (kind === 'Manifest' && !templateIsObject(value)) || holdsSecret(value);

function templateIsObject(manifest: unknown): boolean {
  const template = (manifest as { template?: unknown } | null)?.template;
  return typeof template === 'object' && template !== null && !Array.isArray(template);
}

export class SealingStore implements HubStore {
  constructor(
    private readonly inner: HubStore,
    private readonly key: SealKey,
    private readonly shouldSeal: SealPredicate = sealsSecrets,
  ) {}

  /**
   * Wraps the store with the key in keyFile. Creates the key (0600) when the
   * file is missing and the store holds nothing sealed; refuses when sealed
   * data exists without its key (restore the key file).
   */
  static async open(inner: HubStore, keyFile: string, shouldSeal: SealPredicate = sealsSecrets): Promise<{ store: SealingStore; keyCreated: boolean }> {
    const mayCreate = async () => {
      for (const kind of storedKinds) {
        if ((await inner.list(kind)).items.some((e) => isSealed(e.object))) return false;
      }
      return true;
    };
    try {
      const { key, created } = await loadOrCreateSealKey(keyFile, mayCreate);
      return { store: new SealingStore(inner, key, shouldSeal), keyCreated: created };
    } catch (err) {
      throw translate(err);
    }
  }

  private aad(kind: StoredKind, key: KeyOf<StoredKind>): Buffer {
    return Buffer.from(`${kind}\0${encodeKey(kind, key)}`);
  }

  private sealValue<K extends StoredKind>(kind: K, key: KeyOf<K>, value: StoredKinds[K]): StoredKinds[K] {
    if (!this.shouldSeal(kind, value)) return value;
    const sealed: SealedValue = { sealed: this.key.seal(Buffer.from(JSON.stringify(value)), this.aad(kind, key)).toString('base64') };
    return sealed as unknown as StoredKinds[K];
  }

  private openValue<K extends StoredKind>(kind: K, key: StoredKeyOf<K>, value: StoredKinds[K], rv: ResourceVersion): StoredKinds[K] {
    if (!isSealed(value)) return value;
    try {
      const plain = this.key.open(Buffer.from(value.sealed, 'base64'), this.aad(kind, key as KeyOf<K>));
      return withVersion(JSON.parse(plain.toString('utf8')), rv);
    } catch (err) {
      const e = translate(err);
      if (e instanceof HawserError) throw new HawserError(e.code, `${kind} ${encodeKey(kind, key as KeyOf<K>)}: ${e.message}`, { cause: err });
      throw e;
    }
  }

  private openEntry<K extends StoredKind>(kind: K, entry: Entry<K>): Entry<K> {
    return { ...entry, object: this.openValue(kind, entry.key, entry.object, entry.resourceVersion) };
  }

  async get<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<StoredKinds[K] | undefined> {
    return (await this.read(kind, key))?.object;
  }

  async read<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<Entry<K> | undefined> {
    const entry = await this.inner.read(kind, key);
    return entry && this.openEntry(kind, entry);
  }

  async list<K extends StoredKind>(kind: K, options?: ListOptions): Promise<ListResult<K>> {
    const result = await this.inner.list(kind, options);
    return { ...result, items: result.items.map((e) => this.openEntry(kind, e)) };
  }

  async put<K extends StoredKind>(kind: K, key: KeyOf<K>, value: StoredKinds[K], options?: WriteOptions & { expect?: Precondition }): Promise<ResourceVersion> {
    return this.inner.put(kind, key, this.sealValue(kind, key, value), options);
  }

  delete<K extends StoredKind>(kind: K, key: KeyOf<K>, options?: WriteOptions & { expect?: Precondition }): Promise<ResourceVersion | undefined> {
    return this.inner.delete(kind, key, options);
  }

  async batch(ops: readonly StoreOp[], options?: WriteOptions): Promise<Array<ResourceVersion | undefined>> {
    return this.inner.batch(
      ops.map((op) => (op.op === 'put' ? ({ ...op, value: this.sealValue(op.kind, op.key, op.value as never) } as StoreOp) : op)),
      options,
    );
  }

  watch<K extends StoredKind>(kind: K, options: WatchOptions): AsyncIterable<WatchEvent<K>> {
    const events = this.inner.watch(kind, options);
    const open = (e: WatchEvent<K>): WatchEvent<K> => ({ ...e, object: this.openValue(kind, e.key, e.object, e.resourceVersion) });
    return {
      async *[Symbol.asyncIterator]() {
        for await (const e of events) yield open(e);
      },
    };
  }

  info(): Promise<StoreInfo> {
    return this.inner.info();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
