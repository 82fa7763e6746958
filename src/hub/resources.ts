import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import {
  defaultMaxObjectBytes,
  describeDocument,
  identifyObject,
  type KubeObject,
  type ObjectIdentity,
  quoteBounded,
  type ResourceKind,
  type SourcedDocument,
  validateObject,
  type ValidObject,
} from '../api/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import type { HubStore, KeyOf, StoreOp } from './store.js';

// Apply, get, list, delete and watch of the resources operators write to the
// hub: Subscriptions and their kin, and the native objects they feed (kept
// here as templates, never run). An apply validates every document before it
// stores any, then writes them all in one atomic batch.

/** A key within a kind; feeds are keyed by apiVersion and kind as well. */
export interface ResourceKey {
  namespace?: string;
  name: string;
  apiVersion?: string;
  kind?: string;
}

export type Precondition = { resourceVersion: string } | { absent: true };

export type ResourceOp =
  | { op: 'put'; kind: ResourceKind; key: ResourceKey; value: KubeObject; expect?: Precondition }
  | { op: 'delete'; kind: ResourceKind; key: ResourceKey; expect?: Precondition };

export interface ResourceEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  resourceVersion: string;
}

/** What this needs of the hub store: versioned objects, atomic batches with preconditions, watch from a version. */
export interface ResourceStore {
  /** The object with metadata.resourceVersion set. */
  get(kind: ResourceKind, key: ResourceKey): Promise<KubeObject | undefined>;
  list(kind: ResourceKind, options?: { namespace?: string }): Promise<{ items: KubeObject[]; resourceVersion: string }>;
  /** All or nothing; a failed precondition throws HAWSER_STORE_CONFLICT and writes nothing. */
  batch(ops: readonly ResourceOp[]): Promise<Array<string | undefined>>;
  watch(kind: ResourceKind, options: { resourceVersion: string; namespace?: string; signal?: AbortSignal }): AsyncIterable<ResourceEvent>;
}

export interface ResourceServiceOptions {
  store: ResourceStore;
  /** Dedicated namespaces of the registered clusters: a Localization must be in one. */
  clusterNamespaces(): Promise<ReadonlySet<string>>;
  maxObjectBytes?: number;
  now?: () => Date;
  newUid?: () => string;
}

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResultItem {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  action: ApplyAction;
  resourceVersion?: string;
}

export interface DeleteResultItem {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  deleted: boolean;
}

/** Server-owned metadata: kept from the stored object, never taken from a document. */
const serverMeta = ['uid', 'creationTimestamp', 'generation', 'resourceVersion'] as const;
/** Kinds whose status the hub writes: an apply keeps it. */
const kindsWithStatus: ReadonlySet<ResourceKind> = new Set(['Subscription', 'Description']);
/** Conflicts with the hub's own writes (status) between read and write: tried again this often. */
const applyAttempts = 3;

function keyOf(id: ObjectIdentity): ResourceKey {
  return id.resourceKind === 'Feed' ? { apiVersion: id.apiVersion, kind: id.kind, ...(id.namespace ? { namespace: id.namespace } : {}), name: id.name } : { ...(id.namespace ? { namespace: id.namespace } : {}), name: id.name };
}

function identityText(id: ObjectIdentity): string {
  return `${id.apiVersion} ${id.kind} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`;
}

/** What an apply compares: the object without what the hub owns. */
function comparable(object: KubeObject): unknown {
  const { status: _status, metadata, ...rest } = object;
  const meta: Record<string, unknown> = { ...metadata };
  for (const field of serverMeta) delete meta[field];
  return { ...rest, metadata: meta };
}

function specOf(object: KubeObject): unknown {
  const { status: _status, metadata: _metadata, ...rest } = object;
  return rest;
}

export class ResourceService {
  private readonly store: ResourceStore;
  private readonly maxObjectBytes: number;
  private readonly now: () => Date;
  private readonly newUid: () => string;

  constructor(private readonly options: ResourceServiceOptions) {
    this.store = options.store;
    this.maxObjectBytes = options.maxObjectBytes ?? defaultMaxObjectBytes;
    this.now = options.now ?? (() => new Date());
    this.newUid = options.newUid ?? randomUUID;
  }

  /** Every document is validated first; any refusal stores nothing. Then all are written in one batch. */
  async apply(documents: readonly SourcedDocument[], defaultNamespace?: string): Promise<ApplyResultItem[]> {
    const valid = this.validateAll(documents, defaultNamespace);
    await this.checkLocalizationNamespaces(valid);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.write(valid);
      } catch (err) {
        const conflict = err instanceof HawserError && err.code === ErrorCode.StoreConflict;
        const userPrecondition = valid.some((v) => v.value.expectResourceVersion);
        if (!conflict || userPrecondition || attempt >= applyAttempts) throw err;
      }
    }
  }

  private validateAll(documents: readonly SourcedDocument[], defaultNamespace?: string): Array<{ source: string; value: ValidObject; id: ObjectIdentity }> {
    const valid: Array<{ source: string; value: ValidObject; id: ObjectIdentity }> = [];
    const seen = new Map<string, string>();
    for (const { source, doc } of documents) {
      const result = validateObject(doc, { maxObjectBytes: this.maxObjectBytes, ...(defaultNamespace ? { defaultNamespace } : {}) });
      if (!result.ok) throw new HawserError(result.code, `${source}: ${result.message}; nothing was applied`);
      const id = identityOf(result.value);
      const text = `${id.resourceKind} ${identityText(id)}`;
      const earlier = seen.get(text);
      if (earlier) throw new HawserError(ErrorCode.InvalidObject, `${source}: ${describeDocument(doc)} is also in ${earlier}; nothing was applied`);
      seen.set(text, source);
      valid.push({ source, value: result.value, id });
    }
    return valid;
  }

  /** A Localization lives in a registered cluster's dedicated namespace (Clusternet: the cluster's namespace). */
  private async checkLocalizationNamespaces(valid: ReadonlyArray<{ source: string; value: ValidObject }>): Promise<void> {
    const localizations = valid.filter((v) => v.value.resourceKind === 'Localization');
    if (localizations.length === 0) return;
    const namespaces = await this.options.clusterNamespaces();
    for (const { source, value } of localizations) {
      const ns = value.object.metadata.namespace ?? '';
      if (!namespaces.has(ns)) {
        throw new HawserError(
          ErrorCode.UnknownClusterNamespace,
          `${source}: Localization ${quoteBounded(value.object.metadata.name)} is in namespace ${quoteBounded(ns)}, which is no registered cluster's dedicated namespace (see hawser get clusters -o yaml: metadata.namespace); nothing was applied`,
        );
      }
    }
  }

  private async write(valid: ReadonlyArray<{ value: ValidObject; id: ObjectIdentity }>): Promise<ApplyResultItem[]> {
    const existing = await Promise.all(valid.map((v) => this.store.get(v.id.resourceKind, keyOf(v.id))));
    const ops: ResourceOp[] = [];
    const results: ApplyResultItem[] = [];
    const nowIso = this.now().toISOString();
    for (const [i, { value, id }] of valid.entries()) {
      const old = existing[i];
      const item = { apiVersion: id.apiVersion, kind: id.kind, ...(id.namespace ? { namespace: id.namespace } : {}), name: id.name };
      if (value.expectResourceVersion && value.expectResourceVersion !== (old?.metadata.resourceVersion ?? '')) {
        throw new HawserError(
          ErrorCode.StoreConflict,
          `${identityText(id)}: the document says resourceVersion ${quoteBounded(value.expectResourceVersion)}, the hub has ${old ? quoteBounded(old.metadata.resourceVersion ?? '') : 'no such object'}; get it again and reapply; nothing was applied`,
        );
      }
      if (old && isDeepStrictEqual(comparable(old), comparable(value.object))) {
        results.push({ ...item, action: 'unchanged', ...(old.metadata.resourceVersion ? { resourceVersion: old.metadata.resourceVersion } : {}) });
        continue;
      }
      const oldGeneration = typeof old?.metadata.generation === 'number' ? old.metadata.generation : 0;
      const generation = old && isDeepStrictEqual(specOf(old), specOf(value.object)) ? oldGeneration : oldGeneration + 1;
      const stored: KubeObject = {
        ...value.object,
        metadata: {
          ...value.object.metadata,
          uid: old?.metadata.uid ?? this.newUid(),
          creationTimestamp: old?.metadata.creationTimestamp ?? nowIso,
          generation,
        },
        ...(old && kindsWithStatus.has(id.resourceKind) && old.status !== undefined ? { status: old.status } : {}),
      };
      ops.push({
        op: 'put',
        kind: id.resourceKind,
        key: keyOf(id),
        value: stored,
        expect: old?.metadata.resourceVersion ? { resourceVersion: old.metadata.resourceVersion } : { absent: true },
      });
      results.push({ ...item, action: old ? 'configured' : 'created' });
    }
    if (ops.length === 0) return results;
    const versions = await this.store.batch(ops);
    let next = 0;
    return results.map((r) => {
      if (r.action === 'unchanged') return r;
      const resourceVersion = versions[next++];
      return resourceVersion ? { ...r, resourceVersion } : r;
    });
  }

  async get(kind: ResourceKind, key: ResourceKey): Promise<KubeObject> {
    const object = await this.store.get(kind, key);
    if (!object) throw new HawserError(ErrorCode.NotFound, `${kind} ${quoteBounded(`${key.namespace ? `${key.namespace}/` : ''}${key.name}`)} not found`);
    return object;
  }

  async list(kind: ResourceKind, namespace?: string): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    return this.store.list(kind, namespace === undefined ? {} : { namespace });
  }

  /** Deletes each named object that exists, all in one batch; those that did not exist are reported. */
  async delete(documents: readonly SourcedDocument[], defaultNamespace?: string): Promise<DeleteResultItem[]> {
    const ids: ObjectIdentity[] = [];
    for (const { source, doc } of documents) {
      const id = identifyObject(doc, defaultNamespace ? { defaultNamespace } : {});
      if (!id.ok) throw new HawserError(id.code, `${source}: ${id.message}; nothing was deleted`);
      ids.push(id.value);
    }
    return this.deleteIds(ids);
  }

  async deleteOne(kind: ResourceKind, key: ResourceKey): Promise<void> {
    const [result] = await this.store.batch([{ op: 'delete', kind, key }]);
    if (result === undefined) throw new HawserError(ErrorCode.NotFound, `${kind} ${quoteBounded(`${key.namespace ? `${key.namespace}/` : ''}${key.name}`)} not found`);
  }

  private async deleteIds(ids: readonly ObjectIdentity[]): Promise<DeleteResultItem[]> {
    const versions = ids.length ? await this.store.batch(ids.map((id) => ({ op: 'delete' as const, kind: id.resourceKind, key: keyOf(id) }))) : [];
    return ids.map((id, i) => ({
      apiVersion: id.apiVersion,
      kind: id.kind,
      ...(id.namespace ? { namespace: id.namespace } : {}),
      name: id.name,
      deleted: versions[i] !== undefined,
    }));
  }

  /**
   * Changes after `resourceVersion`; without one, the current objects as
   * ADDED first, then the changes after them (Kubernetes' watch semantics).
   */
  async *watch(kind: ResourceKind, options: { resourceVersion?: string; namespace?: string; signal?: AbortSignal }): AsyncIterable<ResourceEvent> {
    let from = options.resourceVersion;
    if (from === undefined || from === '' || from === '0') {
      const listed = await this.list(kind, options.namespace);
      for (const object of listed.items) yield { type: 'ADDED', object, resourceVersion: object.metadata.resourceVersion ?? listed.resourceVersion };
      from = listed.resourceVersion;
    }
    yield* this.store.watch(kind, { resourceVersion: from, ...(options.namespace !== undefined ? { namespace: options.namespace } : {}), ...(options.signal ? { signal: options.signal } : {}) });
  }
}

function identityOf(value: ValidObject): ObjectIdentity {
  const { apiVersion, kind, metadata } = value.object;
  return { resourceKind: value.resourceKind, apiVersion, kind, name: metadata.name, ...(metadata.namespace ? { namespace: metadata.namespace } : {}) };
}

/** The hub store as ResourceService sees it: objects of the resource kinds, lists without their keys. */
export function resourceStoreOf(store: HubStore): ResourceStore {
  return {
    get: (kind, key) => store.get(kind, toStoreKey(kind, key)) as Promise<KubeObject | undefined>,
    list: async (kind, options) => {
      const listed = await store.list(kind, options);
      return { items: listed.items.map((e) => e.object as KubeObject), resourceVersion: listed.resourceVersion };
    },
    batch: (ops) =>
      store.batch(
        ops.map((op) =>
          op.op === 'put'
            ? { op: 'put', kind: op.kind, key: toStoreKey(op.kind, op.key), value: op.value, ...(op.expect ? { expect: op.expect } : {}) }
            : { op: 'delete', kind: op.kind, key: toStoreKey(op.kind, op.key), ...(op.expect ? { expect: op.expect } : {}) },
        ) as StoreOp[],
      ),
    watch: async function* (kind, options) {
      for await (const event of store.watch(kind, options)) yield { type: event.type, object: event.object as KubeObject, resourceVersion: event.resourceVersion };
    },
  };
}

function toStoreKey(kind: ResourceKind, key: ResourceKey): KeyOf<ResourceKind> {
  const namespace = key.namespace ? { namespace: key.namespace } : {};
  if (kind === 'Feed') return { apiVersion: key.apiVersion ?? '', kind: key.kind ?? '', ...namespace, name: key.name };
  return { ...namespace, name: key.name };
}

/** Dedicated namespaces of the registered clusters (ManagedCluster.metadata.namespace). */
export async function clusterNamespacesOf(store: HubStore): Promise<ReadonlySet<string>> {
  const clusters = (await store.list('ManagedCluster')).items;
  return new Set(clusters.map((c) => c.object.metadata.namespace).filter((ns): ns is string => Boolean(ns)));
}
