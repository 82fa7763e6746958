import type { KubeConfig } from '@kubernetes/client-node';
import { boundedText, quoteBounded } from '../api/index.js';
import { type Clock, ErrorCode, HawserError, systemClock, toHawserError } from '../tunnel/index.js';
import { groupVersionPath, RestMapper, type RestMapping, splitApiVersion } from './apply-discovery.js';
import { KubeHttp, type KubeResponse, statusMessage, statusOf } from './apply-http.js';
import { applyOrder, deleteOrder, type GroupKind, phaseOf } from './apply-order.js';
import { OwnedObjectWatch, type OwnedObjectWatchOptions } from './apply-watch.js';
import {
  clusterIdProblem,
  conflictingManagers,
  fieldManagerFor,
  isOtherAgentManager,
  type KubeObject,
  managedByLabel,
  type ObjectMeta,
  otherOwners,
  stampOwnership,
  subscriptionsOf,
  subscriptionTagProblem,
} from './ownership.js';

// The agent's apply engine: a desired set of plain Kubernetes objects in,
// server-side applied to the agent's own cluster, a report per object out.
// It knows nothing of the wire: sync (pull, push or dual) hands it the set.
//
// - Server-side apply with the field manager "<fieldManager>/<cluster-id>".
//   An apply first goes without force. A conflict with a manager that is not
//   another hawser agent (kubectl edit, kubectl scale, a hand-made patch) is
//   drift, and the apply is retried with force=true: the desired state takes
//   its fields back. A conflict with another hawser agent (another cluster id
//   applying the same object with another value) is reported as
//   HAWSER_APPLY_CONFLICT and nothing is forced, so two registrations never
//   fight over a field every pass.
// - Order: Namespaces, then CRDs (each waited for until Established, within
//   crdEstablishTimeoutMs), then the rest (apply-order.ts); deletes in reverse.
// - Prune (allowPrune) deletes objects that carry this cluster id's label and
//   are not in the desired set, and only those. allowPrune says the set is
//   authoritative: the caller passes it only for a set that is this cluster's
//   whole desired state from a hub it trusts (same incarnation, not a snapshot
//   taken after a data loss); otherwise nothing is deleted and the objects
//   stay, so an empty or restored hub never causes mass deletion by itself.
//   An object another cluster id also claims is released (this agent's fields
//   and marks removed), not deleted. A CRD with custom resources that are not
//   this cluster id's is kept (HAWSER_PRUNE_BLOCKED). A Namespace of its own
//   is deleted with whatever it holds, as kubectl apply --prune and Clusternet
//   do: an object made by hand in a namespace hawser made goes with it.

export interface DesiredObject {
  /** The Subscription this object comes from: "namespace/name". */
  subscription: string;
  object: KubeObject;
}

export interface ReconcileInput {
  objects: readonly DesiredObject[];
  /**
   * The set is this cluster's complete, authoritative desired state: objects
   * of this cluster id that it does not hold are deleted. False keeps them.
   */
  allowPrune: boolean;
  signal?: AbortSignal;
}

export type ApplyAction = 'applied' | 'unchanged' | 'deleted' | 'released' | 'error';

export interface ObservedCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface ObservedStatus {
  /** The object's metadata.generation; with observedGeneration it says whether the status is about the current spec. */
  generation?: number;
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  updatedReplicas?: number;
  conditions?: ObservedCondition[];
}

export interface ObjectReport {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  subscriptions: string[];
  action: ApplyAction;
  /** Whether the object is in the cluster after this pass; absent when that is not known (the API server was not reached). */
  exists?: boolean;
  error?: { code: ErrorCode; message: string };
  /** Read back from the API server's answer to the apply. */
  status?: ObservedStatus;
}

export interface ReconcileReport {
  objects: ObjectReport[];
  prune: {
    ran: boolean;
    /** Kinds that could not be listed for prune (their objects were left alone). */
    errors: string[];
  };
}

export interface ApplyEngineOptions {
  kubeConfig: KubeConfig;
  /** This agent's cluster id (a lower-case UUID). */
  clusterId: string;
  /** Field manager base name, e.g. "hawser-agent"; the cluster id is appended. */
  fieldManager: string;
  /** Deadline of each API request. Default 15 s. */
  requestTimeoutMs?: number;
  /** How long a CRD applied in the set may take to become Established and served. Default 60 s. */
  crdEstablishTimeoutMs?: number;
  /** Poll interval while waiting for a CRD. Default 200 ms. */
  crdPollMs?: number;
  /** Objects of one kind applied at once. Default 4. */
  concurrency?: number;
  clock?: Clock;
}

/** Bounds on what a report carries from the API server. */
const maxErrorChars = 1024;
const maxConditions = 16;
const maxConditionMessageChars = 256;

const metadataListAccept = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

interface Entry {
  object: KubeObject;
  subscriptions: string[];
  gk: GroupKind;
  name: string;
  namespace: string | undefined;
}

interface PruneCandidate {
  mapping: RestMapping;
  meta: ObjectMeta;
  group: string;
  kind: string;
  name: string;
  namespace: string | undefined;
}

function gkKey(gk: GroupKind): string {
  return `${gk.group}/${gk.kind}`;
}

function objectKey(group: string, kind: string, namespace: string | undefined, name: string): string {
  return `${group}/${kind}/${namespace ?? ''}/${name}`;
}

function resourcePath(m: RestMapping, namespace: string | undefined, name?: string): string {
  let path = groupVersionPath(m.group, m.version);
  if (m.namespaced && namespace !== undefined) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${m.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  return path;
}

function apiVersionOf(m: { group: string; version: string }): string {
  return m.group === '' ? m.version : `${m.group}/${m.version}`;
}

function isBuiltInGroup(group: string): boolean {
  return !group.includes('.') || group.endsWith('.k8s.io');
}

function codeForStatus(status: number): ErrorCode {
  return status >= 500 || status === 429 ? ErrorCode.Unavailable : ErrorCode.ApplyRejected;
}

/** Runs fn over items, at most `limit` at once. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function observedStatus(status: unknown, generation?: unknown): ObservedStatus | undefined {
  if (!status || typeof status !== 'object') return undefined;
  const s = status as Record<string, unknown>;
  const out: ObservedStatus = {};
  if (typeof generation === 'number' && typeof s['observedGeneration'] === 'number') {
    out.generation = generation;
    out.observedGeneration = s['observedGeneration'];
  }
  for (const f of ['replicas', 'readyReplicas', 'availableReplicas', 'updatedReplicas'] as const) {
    if (typeof s[f] === 'number') out[f] = s[f];
  }
  if (Array.isArray(s['conditions'])) {
    out.conditions = (s['conditions'] as Array<Record<string, unknown>>)
      .filter((c) => c && typeof c.type === 'string' && typeof c.status === 'string')
      .slice(0, maxConditions)
      .map((c) => ({
        type: boundedText(c.type, 128),
        status: boundedText(c.status, 32),
        ...(typeof c.reason === 'string' ? { reason: boundedText(c.reason, 128) } : {}),
        ...(typeof c.message === 'string' ? { message: boundedText(c.message, maxConditionMessageChars) } : {}),
        ...(typeof c.lastTransitionTime === 'string' ? { lastTransitionTime: c.lastTransitionTime } : {}),
      }));
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A desired object's shape problem, or undefined. */
function manifestProblem(d: DesiredObject): string | undefined {
  const o = d.object as Partial<KubeObject> | undefined;
  if (!o || typeof o !== 'object') return 'object is not a map';
  if (typeof o.apiVersion !== 'string' || o.apiVersion === '') return 'apiVersion is missing';
  if (typeof o.kind !== 'string' || o.kind === '') return 'kind is missing';
  if (!o.metadata || typeof o.metadata !== 'object') return 'metadata is missing';
  if (typeof o.metadata.name !== 'string' || o.metadata.name === '') return 'metadata.name is missing';
  if (o.metadata.namespace !== undefined && typeof o.metadata.namespace !== 'string') return 'metadata.namespace is not a string';
  return subscriptionTagProblem(typeof d.subscription === 'string' ? d.subscription : String(d.subscription));
}

/** What sync needs of an applier: the engine, or a fake one for benchmarks without clusters. */
export interface Applier {
  reconcile(input: ReconcileInput): Promise<ReconcileReport>;
}

export class ApplyEngine implements Applier {
  readonly fieldManager: string;
  readonly clusterId: string;
  private readonly baseManager: string;
  private readonly http: KubeHttp;
  private readonly mapper: RestMapper;
  private readonly clock: Clock;
  private readonly crdEstablishTimeoutMs: number;
  private readonly crdPollMs: number;
  private readonly concurrency: number;
  /**
   * Resource types that may hold this cluster id's objects. Unknown (undefined)
   * until the first prune, which lists every type the API server serves once,
   * so objects applied before a restart are found without any record of them.
   */
  private inventory: Map<string, RestMapping> | undefined;
  private readonly appliedTypes = new Map<string, RestMapping>();
  private running: Promise<ReconcileReport> | undefined;
  private readonly watches = new Set<OwnedObjectWatch>();

  constructor(options: ApplyEngineOptions) {
    const problem = clusterIdProblem(options.clusterId);
    if (problem) throw new HawserError(ErrorCode.InvalidOption, problem);
    if (!/^[\x21-\x7e]{1,64}$/.test(options.fieldManager)) {
      throw new HawserError(ErrorCode.InvalidOption, `field manager ${quoteBounded(options.fieldManager)} must be 1-64 printable characters without spaces`);
    }
    this.clusterId = options.clusterId;
    this.baseManager = options.fieldManager;
    this.fieldManager = fieldManagerFor(options.fieldManager, options.clusterId);
    this.http = new KubeHttp(options.kubeConfig, options.requestTimeoutMs ?? 15_000);
    this.mapper = new RestMapper(this.http);
    this.clock = options.clock ?? systemClock;
    this.crdEstablishTimeoutMs = options.crdEstablishTimeoutMs ?? 60_000;
    this.crdPollMs = options.crdPollMs ?? 200;
    this.concurrency = Math.max(1, options.concurrency ?? 4);
  }

  /** Closes kept-alive connections to the API server (a watch from watchOwned is closed by its own close()). */
  close(): void {
    this.http.close();
  }

  /** Types that may hold this cluster id's objects: those applied, and those the first prune found. */
  ownedTypes(): RestMapping[] {
    return [...new Map([...(this.inventory ?? []), ...this.appliedTypes]).values()];
  }

  /**
   * Watches this cluster id's objects and calls onDeleted when one goes (see
   * apply-watch.ts). The watched types follow ownedTypes() after every pass.
   */
  watchOwned(options: OwnedObjectWatchOptions): OwnedObjectWatch {
    const watch: OwnedObjectWatch = new OwnedObjectWatch(this.http, managedByLabel(this.clusterId), options, () => this.watches.delete(watch));
    this.watches.add(watch);
    watch.setTypes(this.ownedTypes());
    return watch;
  }

  /**
   * Applies the desired set, prunes when allowed, and reports every object.
   * One pass at a time: a call while one runs waits for it, then runs.
   */
  async reconcile(input: ReconcileInput): Promise<ReconcileReport> {
    while (this.running) await this.running.catch(() => undefined);
    const run = this.pass(input);
    this.running = run;
    try {
      return await run;
    } finally {
      if (this.running === run) this.running = undefined;
    }
  }

  private async pass(input: ReconcileInput): Promise<ReconcileReport> {
    const signal = input.signal;
    this.mapper.beginPass();
    const reports: ObjectReport[] = [];
    const entries = this.prepare(input.objects, reports);
    const applied = new Map<Entry, ObjectReport>();
    const apply = async (e: Entry, blocked?: { code: ErrorCode; message: string }) => {
      throwIfAborted(signal);
      const report = blocked ? this.report(e, 'error', undefined, blocked) : await this.applyOne(e, signal);
      applied.set(e, report);
    };

    // Namespaces, then CRDs, then the rest; within a rank, several at once.
    const byPhase = (phase: string) => applyOrder(entries.filter((e) => phaseOf(e.gk) === phase).map((e) => ({ ...e.gk, namespace: e.namespace, name: e.name, e }))).map((x) => x.e);
    const namespaces = byPhase('namespace');
    await forEachLimited(namespaces, this.concurrency, (e) => apply(e));
    const crds = byPhase('crd');
    await forEachLimited(crds, this.concurrency, (e) => apply(e));

    // Custom resources wait for their CRD; a CRD that failed blocks its kind with its reason.
    const crdBlocks = new Map<string, { code: ErrorCode; message: string }>();
    await forEachLimited(crds, this.concurrency, async (e) => {
      const spec = (e.object['spec'] ?? {}) as { group?: string; names?: { kind?: string } };
      const gk = { group: String(spec.group ?? ''), kind: String(spec.names?.kind ?? '') };
      const r = applied.get(e);
      if (r?.action === 'error') {
        crdBlocks.set(gkKey(gk), { code: ErrorCode.CrdNotEstablished, message: `CRD ${e.name} for ${gkKey(gk)} was not applied: ${r.error?.message ?? ''}` });
        return;
      }
      const problem = await this.waitEstablished(e.name, signal).catch((err: unknown) => {
        if (signal?.aborted) throw err;
        return `CRD ${e.name}: ${toHawserError(err).message}`;
      });
      if (problem) crdBlocks.set(gkKey(gk), { code: ErrorCode.CrdNotEstablished, message: problem });
    });

    const rest = byPhase('rest');
    // One kind after another in apply order; the objects of one kind several at once.
    let batch: Entry[] = [];
    const flush = async () => {
      await forEachLimited(batch, this.concurrency, (e) => apply(e, crdBlocks.get(gkKey(e.gk))));
      batch = [];
    };
    for (const e of rest) {
      if (batch.length > 0 && gkKey(batch[0]!.gk) !== gkKey(e.gk)) await flush();
      batch.push(e);
    }
    await flush();

    for (const e of [...namespaces, ...crds, ...rest]) reports.push(applied.get(e)!);

    const prune = { ran: false, errors: [] as string[] };
    if (input.allowPrune) {
      throwIfAborted(signal);
      prune.ran = true;
      reports.push(...(await this.prune(entries, prune.errors, signal)));
    }
    for (const w of this.watches) w.setTypes(this.ownedTypes());
    return { objects: reports, prune };
  }

  /** Validates and de-duplicates the desired set; a bad or conflicting object gets an error report. */
  private prepare(objects: readonly DesiredObject[], reports: ObjectReport[]): Entry[] {
    const byKey = new Map<string, Entry>();
    for (const d of objects) {
      const problem = manifestProblem(d);
      if (problem) {
        const o = (d.object ?? {}) as Partial<KubeObject>;
        reports.push({
          apiVersion: typeof o.apiVersion === 'string' ? o.apiVersion : '',
          kind: typeof o.kind === 'string' ? o.kind : '',
          name: typeof o.metadata?.name === 'string' ? o.metadata.name : '',
          ...(typeof o.metadata?.namespace === 'string' ? { namespace: o.metadata.namespace } : {}),
          subscriptions: typeof d.subscription === 'string' ? [d.subscription] : [],
          action: 'error',
          error: { code: ErrorCode.InvalidManifest, message: problem },
        });
        continue;
      }
      const o = d.object;
      const gk = { group: splitApiVersion(o.apiVersion).group, kind: o.kind };
      const name = o.metadata.name!;
      const namespace = o.metadata.namespace || undefined;
      const key = objectKey(gk.group, gk.kind, namespace, name);
      const seen = byKey.get(key);
      if (!seen) {
        byKey.set(key, { object: o, subscriptions: [d.subscription], gk, name, namespace });
        continue;
      }
      if (JSON.stringify(seen.object) === JSON.stringify(o)) {
        if (!seen.subscriptions.includes(d.subscription)) seen.subscriptions.push(d.subscription);
        continue;
      }
      reports.push({
        ...this.report(
          { object: o, subscriptions: [d.subscription], gk, name, namespace },
          'error',
          undefined,
          { code: ErrorCode.InvalidManifest, message: `${o.kind} ${namespace ? `${namespace}/` : ''}${name} is also desired by subscription ${seen.subscriptions[0]} with other content; that one is applied` },
        ),
      });
    }
    return [...byKey.values()];
  }

  private report(
    e: Entry,
    action: ApplyAction,
    exists: boolean | undefined,
    error?: { code: ErrorCode; message: string },
    status?: ObservedStatus,
  ): ObjectReport {
    return {
      apiVersion: e.object.apiVersion,
      kind: e.object.kind,
      ...(e.namespace !== undefined ? { namespace: e.namespace } : {}),
      name: e.name,
      subscriptions: [...e.subscriptions].sort(),
      action,
      ...(exists === undefined ? {} : { exists }),
      ...(error ? { error: { code: error.code, message: boundedText(error.message, maxErrorChars) } } : {}),
      ...(status ? { status } : {}),
    };
  }

  private async applyOne(e: Entry, signal: AbortSignal | undefined): Promise<ObjectReport> {
    try {
      const mapping = await this.mapper.resolve(e.object.apiVersion, e.object.kind);
      if (!mapping) {
        const message = isBuiltInGroup(e.gk.group)
          ? `the API server serves no kind ${e.object.kind} in ${e.object.apiVersion}`
          : `CRD for ${gkKey(e.gk)} not in the cluster`;
        return this.report(e, 'error', false, { code: ErrorCode.KindNotServed, message });
      }
      if (mapping.namespaced) e.namespace ??= 'default';
      else e.namespace = undefined;
      const stamped = stampOwnership(e.object, this.clusterId, e.subscriptions);
      if (e.namespace !== undefined) stamped.metadata.namespace = e.namespace;
      else delete stamped.metadata.namespace;
      const path = resourcePath(mapping, e.namespace, e.name);
      // The resourceVersion just before: the same after the apply means it changed nothing. Read each
      // time, not remembered, since a status write or a hand edit of a field not ours also moves it.
      const before = await this.currentResourceVersion(path, signal);
      const body = JSON.stringify(stamped);
      let res = await this.applyPatch(path, body, false, signal);
      if (res.status === 409) {
        const managers = conflictingManagers(statusOf(res).details?.causes ?? []);
        const agents = managers.filter((m) => isOtherAgentManager(m, this.baseManager, this.clusterId));
        if (agents.length > 0) {
          const fields = (statusOf(res).details?.causes ?? []).map((c) => c.field).filter(Boolean).join(', ');
          return this.report(e, 'error', true, {
            code: ErrorCode.ApplyConflict,
            message: `field(s) ${fields} also applied by ${agents.join(', ')} with another value: ${statusMessage(res)}`,
          });
        }
        // Someone changed a field of ours by hand: the desired state takes it back.
        res = await this.applyPatch(path, body, true, signal);
      }
      if (res.status < 200 || res.status >= 300) {
        return this.report(e, 'error', before !== undefined, { code: codeForStatus(res.status), message: statusMessage(res, maxErrorChars) });
      }
      this.appliedTypes.set(gkKey(e.gk), mapping);
      this.inventory?.set(gkKey(e.gk), mapping);
      const live = JSON.parse(res.body) as KubeObject;
      const after = live.metadata?.resourceVersion;
      return this.report(e, before !== undefined && before === after ? 'unchanged' : 'applied', true, undefined, observedStatus(live['status'], live.metadata?.['generation']));
    } catch (err) {
      if (signal?.aborted) throw err;
      const h = toHawserError(err, ErrorCode.Unavailable);
      return this.report(e, 'error', undefined, { code: h.code, message: h.message });
    }
  }

  private applyPatch(path: string, body: string, force: boolean, signal: AbortSignal | undefined): Promise<KubeResponse> {
    return this.http.request({
      method: 'PATCH',
      path,
      query: { fieldManager: this.fieldManager, ...(force ? { force: 'true' } : {}) },
      // JSON is YAML: the apply content type takes it as it is.
      contentType: 'application/apply-patch+yaml',
      body,
      ...(signal ? { signal } : {}),
    });
  }

  private async currentResourceVersion(path: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const res = await this.http.request({ method: 'GET', path, accept: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json', ...(signal ? { signal } : {}) });
    if (res.status !== 200) return undefined;
    return (JSON.parse(res.body) as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
  }

  /** Waits until the CRD is Established and its kind is in discovery; a problem text when it is not within the bound. */
  private async waitEstablished(name: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const deadline = this.clock.now() + this.crdEstablishTimeoutMs;
    const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${encodeURIComponent(name)}`;
    let last = 'not read yet';
    for (;;) {
      throwIfAborted(signal);
      const res = await this.http.request({ method: 'GET', path, ...(signal ? { signal } : {}) });
      if (res.status === 200) {
        const crd = JSON.parse(res.body) as {
          spec?: { group?: string; names?: { kind?: string }; versions?: Array<{ name: string; served?: boolean }> };
          status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
        };
        const conditions = crd.status?.conditions ?? [];
        const established = conditions.find((c) => c.type === 'Established');
        if (established?.status === 'True') {
          const group = crd.spec?.group ?? '';
          const kind = crd.spec?.names?.kind ?? '';
          const versions = (crd.spec?.versions ?? []).filter((v) => v.served !== false);
          let served = true;
          for (const v of versions) {
            this.mapper.forget(group, v.name);
            if (!(await this.mapper.resolve(`${group}/${v.name}`, kind))) served = false;
          }
          if (served) return undefined;
          last = `Established, but ${group}/${kind} is not in discovery yet`;
        } else {
          const why = conditions.find((c) => c.status === 'False' && c.message) ?? established;
          last = why ? `${why.type}=${why.status}${why.reason ? ` (${why.reason})` : ''}${why.message ? `: ${why.message}` : ''}` : 'no Established condition yet';
        }
      } else {
        last = statusMessage(res);
      }
      if (this.clock.now() >= deadline) return `CRD ${name} not Established within ${this.crdEstablishTimeoutMs}ms: ${last}`;
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.crdPollMs));
    }
  }

  /** Deletes (or releases) this cluster id's objects that the desired set no longer holds. */
  private async prune(entries: readonly Entry[], errors: string[], signal: AbortSignal | undefined): Promise<ObjectReport[]> {
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
        const res = await this.applyPatch(path, body, false, signal);
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
