import type { KubeAccess } from './kubeconfig.js';
import { boundedText, quoteBounded } from '../api/core.js';
import { type Clock, ErrorCode, HawserError, systemClock, toHawserError } from '../tunnel/index.js';
import { gkKey, objectKey, resourcePath, RestMapper, type RestMapping, splitApiVersion } from './apply-discovery.js';
import { codeForStatus, KubeHttp, type KubeResponse, statusMessage, statusOf } from './apply-http.js';
import { applyOrder, type GroupKind, phaseOf } from './apply-order.js';
import { type NamedTarget, Pruner } from './apply-prune.js';
import {
  type Applier,
  type ApplyAction,
  type DesiredObject,
  maxErrorChars,
  type ObjectReport,
  type ObservedStatus,
  observedStatus,
  type ReconcileInput,
  type ReconcileReport,
} from './apply-report.js';
import { OwnedObjectWatch, type OwnedObjectWatchOptions } from './apply-watch.js';
import {
  clusterIdProblem,
  conflictingManagers,
  fieldManagerFor,
  isOtherAgentManager,
  type KubeObject,
  managedByLabel,
  stampOwnership,
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

export interface ApplyEngineOptions {
  kubeConfig: KubeAccess;
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

interface Entry {
  object: KubeObject;
  subscriptions: string[];
  gk: GroupKind;
  name: string;
  namespace: string | undefined;
}

function isBuiltInGroup(group: string): boolean {
  return !group.includes('.') || group.endsWith('.k8s.io');
}

/** Runs fn over items, at most `limit` at once. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
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
  private readonly pruner: Pruner;
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
    this.pruner = new Pruner(this.http, this.mapper, this.clusterId, (path, body, signal) => this.applyPatch(path, body, false, signal));
  }

  /** Closes kept-alive connections to the API server (a watch from watchOwned is closed by its own close()). */
  close(): void {
    this.http.close();
  }

  /** Types that may hold this cluster id's objects: those applied, and those the first prune found. */
  ownedTypes(): RestMapping[] {
    return this.pruner.ownedTypes();
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

  /** Deletes the named objects of this cluster id that no other subscription wants (Push deletes), one pass at a time with reconcile. */
  async remove(targets: readonly NamedTarget[], signal?: AbortSignal): Promise<ObjectReport[]> {
    while (this.running) await this.running.catch(() => undefined);
    const run = this.pruner.pruneNamed(targets, signal).then((objects) => ({ objects, prune: { ran: false, errors: [] } }));
    this.running = run;
    try {
      return (await run).objects;
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
      reports.push(...(await this.pruner.prune(entries, prune.errors, signal)));
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
      this.pruner.noteApplied(mapping);
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
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new HawserError(ErrorCode.Cancelled, 'reconcile was cancelled');
}
