import { boundedText } from '../api/core.js';
import { ErrorCode, HawserError, toHawserError } from '../tunnel/index.js';
import { apiVersionOf, gkKey, groupVersionPath, objectKey, resourcePath, type RestMapper, type RestMapping } from './apply-discovery.js';
import { codeForStatus, type KubeHttp, type KubeResponse, metadataListAccept, statusMessage } from './apply-http.js';
import { deleteOrder, type GroupKind } from './apply-order.js';
import { maxErrorChars, type ObjectReport } from './apply-report.js';
import { isOwnedBy, managedByLabel, type ObjectMeta, otherOwners, subscriptionsOf } from './ownership.js';

// Prune: deletes this cluster id's objects that the desired set no longer
// holds, and only those (apply.ts says when it runs).
//
// What is ours is found by listing, with this cluster id's label, the types
// that may hold our objects: those applied, plus, once per engine, every type
// the API server serves (so what an earlier run applied is found without any
// record of it). A type with nothing of ours left is dropped from the list.

/** An object that left the desired set, by name (Push deltas). */
export interface NamedTarget {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  /** The subscription whose object it was: "namespace/name". */
  subscription: string;
}

/** A desired object: prune keeps it. */
export interface PruneKeep {
  gk: GroupKind;
  namespace: string | undefined;
  name: string;
}

interface PruneCandidate {
  mapping: RestMapping;
  meta: ObjectMeta;
  group: string;
  kind: string;
  name: string;
  namespace: string | undefined;
}

export class Pruner {
  /**
   * Types that may hold this cluster id's objects. Unknown (undefined) until
   * the first prune, which lists every type the API server serves once.
   */
  private inventory: Map<string, RestMapping> | undefined;
  private readonly appliedTypes = new Map<string, RestMapping>();

  constructor(
    private readonly http: KubeHttp,
    private readonly mapper: RestMapper,
    private readonly clusterId: string,
    /** Applies `body` with this agent's field manager, without force: used to release an object. */
    private readonly release: (path: string, body: string, signal: AbortSignal | undefined) => Promise<KubeResponse>,
  ) {}

  /** An object of this type was applied: the type is listed at prune from now on. */
  noteApplied(mapping: RestMapping): void {
    this.appliedTypes.set(gkKey(mapping), mapping);
    this.inventory?.set(gkKey(mapping), mapping);
  }

  /** Types that may hold this cluster id's objects: those applied, and those the first prune found. */
  ownedTypes(): RestMapping[] {
    return [...new Map([...(this.inventory ?? []), ...this.appliedTypes]).values()];
  }

  /** Deletes (or releases) this cluster id's objects that the desired set no longer holds. */
  async prune(entries: readonly PruneKeep[], errors: string[], signal: AbortSignal | undefined): Promise<ObjectReport[]> {
    if (!this.inventory) {
      const found = new Map<string, RestMapping>();
      let listable: RestMapping[];
      try {
        listable = await this.mapper.listable();
      } catch (err) {
        if (signal?.aborted) throw err;
        // Without the list of types, what is ours is unknown: prune waits for a later pass.
        errors.push(`discovery: ${toHawserError(err).message}`);
        return [];
      }
      for (const m of listable) {
        throwIfAborted(signal);
        const items = await this.listOwned(m, signal, 1).catch((err: unknown) => {
          errors.push(`${gkKey(m)}: ${toHawserError(err).message}`);
          return [];
        });
        if (items.length > 0) found.set(gkKey(m), m);
      }
      this.inventory = found;
    }
    for (const [k, m] of this.appliedTypes) this.inventory.set(k, m);

    const desired = new Set<string>();
    const desiredKinds = new Set(entries.map((e) => gkKey(e.gk)));
    for (const e of entries) {
      desired.add(objectKey(e.gk.group, e.gk.kind, e.namespace, e.name));
      // Not yet resolved (its kind was not served): keep what could be it.
      if (e.namespace === undefined) desired.add(objectKey(e.gk.group, e.gk.kind, 'default', e.name));
    }
    const candidates: PruneCandidate[] = [];
    for (const [k, m] of [...this.inventory]) {
      throwIfAborted(signal);
      let items: ObjectMeta[];
      try {
        items = await this.listOwned(m, signal);
      } catch (err) {
        if (err instanceof HawserError && err.code === ErrorCode.NotFound) {
          // The type is gone (its CRD deleted): nothing of it is left to prune.
          this.inventory.delete(k);
          this.appliedTypes.delete(k);
          continue;
        }
        errors.push(`${k}: ${toHawserError(err).message}`);
        continue;
      }
      if (items.length === 0 && !desiredKinds.has(k)) {
        // Nothing of ours left of this type: stop listing it every pass.
        this.inventory.delete(k);
        this.appliedTypes.delete(k);
        continue;
      }
      for (const meta of items) {
        if (!meta.name || meta.deletionTimestamp) continue;
        if (desired.has(objectKey(m.group, m.kind, meta.namespace, meta.name))) continue;
        candidates.push({ mapping: m, meta, group: m.group, kind: m.kind, name: meta.name, namespace: meta.namespace });
      }
    }
    const reports: ObjectReport[] = [];
    for (const c of deleteOrder(candidates)) {
      throwIfAborted(signal);
      reports.push(await this.pruneOne(c, signal));
    }
    return reports;
  }

  /**
   * Deletes (or releases) the named objects, each only when it is this
   * cluster id's and no other subscription of it still wants it (Push: the
   * hub names what left the desired set; the agent holds no set to prune
   * against). An object already gone is reported deleted.
   */
  async pruneNamed(targets: readonly NamedTarget[], signal: AbortSignal | undefined): Promise<ObjectReport[]> {
    const reports: ObjectReport[] = [];
    for (const t of targets) {
      throwIfAborted(signal);
      const gone: ObjectReport = {
        apiVersion: t.apiVersion,
        kind: t.kind,
        ...(t.namespace ? { namespace: t.namespace } : {}),
        name: t.name,
        subscriptions: [t.subscription],
        action: 'deleted',
        exists: false,
      };
      try {
        const m = await this.mapper.resolve(t.apiVersion, t.kind);
        // A kind the API server does not serve has no object left to delete.
        if (!m) {
          reports.push(gone);
          continue;
        }
        const namespace = m.namespaced ? t.namespace || 'default' : undefined;
        const res = await this.http.request({ method: 'GET', path: resourcePath(m, namespace, t.name), ...(signal ? { signal } : {}) });
        if (res.status === 404) {
          reports.push(gone);
          continue;
        }
        if (res.status !== 200) throw new HawserError(codeForStatus(res.status), `get ${gkKey(m)} ${t.name}: ${statusMessage(res)}`);
        const meta = (JSON.parse(res.body) as { metadata?: ObjectMeta }).metadata ?? {};
        if (!isOwnedBy(meta, this.clusterId) || meta.deletionTimestamp) continue;
        if (subscriptionsOf(meta, this.clusterId).some((s) => s !== t.subscription)) continue;
        reports.push(await this.pruneOne({ mapping: m, meta, group: m.group, kind: m.kind, name: t.name, namespace }, signal));
      } catch (err) {
        if (signal?.aborted) throw err;
        const h = toHawserError(err, ErrorCode.Unavailable);
        const { exists: _unknown, ...rest } = gone;
        reports.push({ ...rest, action: 'error', error: { code: h.code, message: boundedText(h.message, maxErrorChars) } });
      }
    }
    return reports;
  }

  /** This cluster id's objects of one type, metadata only, every page (or the first `limit`). */
  private async listOwned(m: RestMapping, signal: AbortSignal | undefined, limit?: number): Promise<ObjectMeta[]> {
    const out: ObjectMeta[] = [];
    let cont: string | undefined;
    do {
      const res = await this.http.request({
        method: 'GET',
        path: resourcePath(m, undefined),
        query: { labelSelector: managedByLabel(this.clusterId), limit: String(limit ?? 500), continue: cont },
        accept: metadataListAccept,
        ...(signal ? { signal } : {}),
      });
      if (res.status === 404) throw new HawserError(ErrorCode.NotFound, `${gkKey(m)} is not served`);
      if (res.status !== 200) throw new HawserError(codeForStatus(res.status), `list ${gkKey(m)}: ${statusMessage(res)}`);
      const list = JSON.parse(res.body) as { items?: Array<{ metadata?: ObjectMeta }>; metadata?: { continue?: string } };
      for (const item of list.items ?? []) if (item.metadata) out.push(item.metadata);
      cont = list.metadata?.continue || undefined;
      if (limit !== undefined) break;
    } while (cont);
    return out;
  }

  /**
   * Deleting a CRD deletes every custom resource of it: when any not applied
   * by this cluster id exists (hand-made, another agent's), says so, and the
   * CRD stays.
   */
  private async foreignCustomResources(name: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const res = await this.http.request({ method: 'GET', path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${encodeURIComponent(name)}`, ...(signal ? { signal } : {}) });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new HawserError(codeForStatus(res.status), `CRD ${name}: ${statusMessage(res)}`);
    const crd = JSON.parse(res.body) as { spec?: { group?: string; names?: { plural?: string }; versions?: Array<{ name: string; served?: boolean; storage?: boolean }> } };
    const version = crd.spec?.versions?.find((v) => v.storage) ?? crd.spec?.versions?.find((v) => v.served !== false);
    if (!crd.spec?.group || !crd.spec.names?.plural || !version) return undefined;
    const list = await this.http.request({
      method: 'GET',
      path: `${groupVersionPath(crd.spec.group, version.name)}/${encodeURIComponent(crd.spec.names.plural)}`,
      query: { labelSelector: `!${managedByLabel(this.clusterId)}`, limit: '1' },
      accept: metadataListAccept,
      ...(signal ? { signal } : {}),
    });
    if (list.status === 404) return undefined;
    if (list.status !== 200) throw new HawserError(codeForStatus(list.status), `list ${crd.spec.names.plural}.${crd.spec.group}: ${statusMessage(list)}`);
    const items = (JSON.parse(list.body) as { items?: Array<{ metadata?: ObjectMeta }> }).items ?? [];
    const first = items[0]?.metadata;
    if (!first) return undefined;
    const where = first.namespace ? `${first.namespace}/${first.name ?? ''}` : (first.name ?? '');
    return `CRD ${name} kept: custom resources not applied by this cluster id still use it (e.g. ${where})`;
  }

  private async pruneOne(c: PruneCandidate, signal: AbortSignal | undefined): Promise<ObjectReport> {
    const apiVersion = apiVersionOf(c.mapping);
    const base: ObjectReport = {
      apiVersion,
      kind: c.kind,
      ...(c.namespace !== undefined ? { namespace: c.namespace } : {}),
      name: c.name,
      subscriptions: subscriptionsOf(c.meta, this.clusterId),
      action: 'deleted',
      exists: false,
    };
    const path = resourcePath(c.mapping, c.namespace, c.name);
    const fail = (res: KubeResponse): ObjectReport => ({
      ...base,
      action: 'error',
      exists: true,
      error: { code: codeForStatus(res.status), message: statusMessage(res, maxErrorChars) },
    });
    try {
      if (otherOwners(c.meta, this.clusterId).length > 0) {
        // Another cluster id still wants it: drop only our fields and marks.
        const body = JSON.stringify({ apiVersion, kind: c.kind, metadata: { name: c.name, ...(c.namespace !== undefined ? { namespace: c.namespace } : {}) } });
        const res = await this.release(path, body, signal);
        return res.status >= 200 && res.status < 300 ? { ...base, action: 'released', exists: true } : fail(res);
      }
      if (c.group === 'apiextensions.k8s.io' && c.kind === 'CustomResourceDefinition') {
        const users = await this.foreignCustomResources(c.name, signal);
        if (users) return { ...base, action: 'error', exists: true, error: { code: ErrorCode.PruneBlocked, message: users } };
      }
      const res = await this.http.request({
        method: 'DELETE',
        path,
        // The uid precondition: an object deleted and made anew by someone else meanwhile is not ours to delete.
        body: JSON.stringify({ apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', ...(c.meta.uid ? { preconditions: { uid: c.meta.uid } } : {}) }),
        ...(signal ? { signal } : {}),
      });
      if ((res.status >= 200 && res.status < 300) || res.status === 404) return base;
      return fail(res);
    } catch (err) {
      if (signal?.aborted) throw err;
      const h = toHawserError(err, ErrorCode.Unavailable);
      const { exists: _unknown, ...rest } = base;
      return { ...rest, action: 'error', error: { code: h.code, message: boundedText(h.message, maxErrorChars) } };
    }
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new HawserError(ErrorCode.Cancelled, 'reconcile was cancelled');
}
