import { type Condition, setCondition } from '../../api/index.js';
import {
  type ClusterInput,
  feedOrderFor,
  type FeedOrder,
  type Placement,
  rescheduleAnnotation,
  rescheduleRequested,
  schedule,
  type SubscriptionInput,
  toSubscriptionStatus,
} from '../../scheduler/index.js';
import { ErrorCode, HawserError } from '../../tunnel/index.js';
import {
  decideRender,
  type Feed,
  feedKey,
  type Globalization,
  groupOf,
  type KubeObject as RenderObject,
  type Localization,
  ownerName,
  type RenderedManifest,
  type RenderInput,
  type RenderInputs,
  type RenderProblem,
  renderSubscription,
  sameJson,
  type SubscriptionRef,
} from '../render/index.js';
import type { HubStore, KubeObject, StoreOp } from '../store/types.js';
import { type ClusterHealth, clusterHealth, healthConditions } from './health.js';
import { feedKeyAnnotation, type ManifestObject, ownerOf, toManifest } from './manifest.js';
import type { RenderedView } from './rendered-view.js';

// One subscription, from the store to the store: resolve its feeds, schedule,
// render per selected cluster, and write the Bases, the Manifests and the
// subscription's status in one batch. Idempotent: what is already so is not
// written again.

export interface SubscriptionKey {
  namespace: string;
  name: string;
}

export interface ReconcileResult {
  /** When to look again with nothing changed: the earliest moment a toleration runs out. */
  nextEvaluationAt?: number;
  /** The store's versions of the batch, when one was written. */
  batch?: Array<string | undefined>;
  /** Someone wrote meanwhile (HAWSER_STORE_CONFLICT): run again. */
  retry?: boolean;
}

/** One row per selected cluster. Applied/Healthy and the objects' observed status come from the agents (issue 6 §5). */
export interface ClusterRow {
  cluster: string;
  namespace: string;
  clusterId: string;
  /** revisionOf the cluster's Manifest set as last written. */
  revision?: string;
  manifests: number;
  held?: string;
  message?: string;
  /** ApplyLater overrides that changed and wait for the next change. */
  waiting?: string[];
  /** What the cluster's agent last reported applying for this subscription. */
  health?: ClusterHealth;
}

export interface OverrideFailureRow {
  cluster: string;
  code: string;
  reason: string;
  message: string;
  override?: string;
  object?: string;
}

/** What the deployer writes under a Subscription's status, beside Clusternet's bindingClusters/replicas. */
export interface DeployerStatus {
  bindingClusters?: string[];
  replicas?: Record<string, number[]>;
  conditions: Condition[];
  /** The scheduler's last placement: given back as `previous` so placements are sticky. */
  placement?: Placement;
  clusters?: ClusterRow[];
  missingFeeds: Feed[];
  unsupported: Array<{ code: string; message: string; feed?: Feed; override?: string }>;
  overrideFailures: OverrideFailureRow[];
}

const baseApiVersion = 'apps.clusternet.io/v1alpha1';
/** From this many clusters on, a reconcile reads every Manifest in one list instead of one list per cluster namespace. */
const manyClusters = 32;

interface BaseState {
  revision: string;
  inputs: RenderInputs;
}

type Status = Record<string, unknown>;

/** A copy to write back, sharing what it does not replace (callers set top-level fields only; the store copies what it stores). */
function withoutVersion<T extends { metadata: object }>(object: T): T {
  const copy = { ...object, metadata: { ...object.metadata } };
  delete (copy.metadata as Record<string, unknown>).resourceVersion;
  return copy;
}

/** The object as the store would hold it (no metadata.resourceVersion), without copying it: undefined counts as absent. */
function versionless<T extends { metadata: object }>(object: T): T {
  return { ...object, metadata: { ...object.metadata, resourceVersion: undefined } };
}

/** Same content (as digestOf compares), by a walk rather than two digests: a 1,000-cluster status or 1,000 Manifests per reconcile. */
function same(a: unknown, b: unknown): boolean {
  return sameJson(a, b);
}

function isConflict(error: unknown): boolean {
  return error instanceof HawserError && error.code === ErrorCode.StoreConflict;
}

/** Feeds are stored by name: Descriptions as their own kind, everything else as a native template. */
async function lookupFeed(store: HubStore, feed: Feed): Promise<KubeObject | undefined> {
  if (groupOf(feed.apiVersion) === 'apps.hawser.io' && feed.kind === 'Description') {
    return store.get('Description', { namespace: feed.namespace ?? '', name: feed.name });
  }
  return store.get('Feed', { apiVersion: feed.apiVersion, kind: feed.kind, ...(feed.namespace ? { namespace: feed.namespace } : {}), name: feed.name });
}

/** The earliest future moment a toleration with tolerationSeconds runs out on a tainted cluster. */
export function nextTolerationDeadline(subscription: SubscriptionInput, clusters: readonly ClusterInput[], nowMs: number): number | undefined {
  const seconds = (subscription.spec.clusterTolerations ?? []).flatMap((t) => (typeof t.tolerationSeconds === 'number' ? [t.tolerationSeconds] : []));
  if (seconds.length === 0) return undefined;
  let next: number | undefined;
  for (const cluster of clusters) {
    for (const taint of cluster.spec.taints ?? []) {
      const added = taint.timeAdded === undefined ? NaN : Date.parse(taint.timeAdded);
      if (Number.isNaN(added)) continue;
      // Every limited toleration, matching or not: a look too many costs one idempotent run.
      for (const s of seconds) {
        const at = added + Math.max(0, s) * 1000;
        if (at > nowMs && (next === undefined || at < next)) next = at;
      }
    }
  }
  return next;
}

function clusterKey(cluster: ClusterInput): string {
  return cluster.metadata.namespace ? `${cluster.metadata.namespace}/${cluster.metadata.name}` : cluster.metadata.name;
}

function problemRow(cluster: string, p: RenderProblem): OverrideFailureRow {
  return {
    cluster,
    code: p.code,
    reason: p.reason,
    message: p.message,
    ...(p.override ? { override: `${ownerName(p.override)}:${p.override.override}` } : {}),
    ...(p.object ? { object: p.object } : {}),
  };
}

/**
 * What a reconcile reads of every cluster, from the Deployer's watches
 * instead of a list per reconcile (one subscription over 1,000 clusters
 * listed 1,000 ManagedClusters and read 1,000 reports each time). It holds
 * each object as of its last change that matters to placement or health
 * (the Deployer's relevantDigest), so scheduling and health see what a list
 * would show them.
 */
export interface ClusterView {
  /** Every ManagedCluster, in the store's key order. */
  clusters(): KubeObject[];
  /** A cluster's ClusterSyncStatus (in its namespace, named after it). */
  syncStatus(namespace: string, name: string): KubeObject | undefined;
  /**
   * The workloads' asked replicas of a rendered Manifest set, by the set's
   * revision (a digest of its content, so it never goes stale): what folding
   * an agent's report in needs of the Manifests, without reading and
   * unsealing every one of them per report.
   */
  desiredByRevision?: Map<string, ReadonlyMap<string, number>>;
  /**
   * Every Manifest and Base by owning subscription, kept by the Deployer's
   * watches and the reconciles' own batches: read instead of listing (and
   * decoding, unsealing) every one of them per reconcile. A reconcile that
   * writes tells it (RenderedView.wrote).
   */
  rendered?: RenderedView;
}

/** Revisions kept in a view's desiredByRevision; past it the map starts again (one Dividing subscription over 1,000 clusters has 1,000). */
const maxRememberedRevisions = 20_000;

/** Each workload's asked replicas among templates, by "Kind/[namespace/]name" (as agents' reports name objects). */
function desiredReplicas(templates: readonly KubeObject[]): Map<string, number> {
  const desired = new Map<string, number>();
  for (const t of templates) {
    const spec = t.spec as { replicas?: unknown } | undefined;
    if (typeof spec?.replicas === 'number') desired.set(`${t.kind}/${t.metadata.namespace ? `${t.metadata.namespace}/` : ''}${t.metadata.name}`, spec.replicas);
  }
  return desired;
}

function remember(view: ClusterView | undefined, revision: string | undefined, desired: ReadonlyMap<string, number>): void {
  const memo = view?.desiredByRevision;
  if (!memo || revision === undefined || memo.has(revision)) return;
  if (memo.size >= maxRememberedRevisions) memo.clear();
  memo.set(revision, desired);
}

export async function reconcileSubscription(store: HubStore, key: SubscriptionKey, nowMs: number, view?: ClusterView): Promise<ReconcileResult> {
  try {
    return await reconcileOnce(store, key, nowMs, view);
  } catch (error) {
    if (isConflict(error)) return { retry: true };
    throw error;
  }
}

async function reconcileOnce(store: HubStore, key: SubscriptionKey, nowMs: number, view: ClusterView | undefined): Promise<ReconcileResult> {
  const now = new Date(nowMs);
  const rendered = view?.rendered;
  const [subscription, baseList] = await Promise.all([store.get('Subscription', key), rendered ? undefined : store.list('Base')]);
  const mine = (o: KubeObject): boolean => {
    const owner = ownerOf(o);
    return owner !== undefined && owner.namespace === key.namespace && owner.name === key.name;
  };
  const bases = new Map<string, KubeObject>();
  if (rendered) for (const b of rendered.owned('Base', key)) bases.set(b.metadata.namespace ?? '', b);
  else for (const e of baseList!.items) if (mine(e.object)) bases.set(e.object.metadata.namespace ?? '', e.object);
  // A subscription's Manifests, by cluster namespace: read per namespace where a Base is or is to be (a batch writes them together).
  const manifests = new Map<string, Map<string, ManifestObject>>();
  const readManifests = async (namespace?: string): Promise<void> => {
    const list = await store.list('Manifest', namespace === undefined ? {} : { namespace });
    if (namespace !== undefined) manifests.set(namespace, new Map());
    for (const e of list.items) {
      if (!mine(e.object)) continue;
      const ns = e.object.metadata.namespace ?? '';
      if (!manifests.has(ns)) manifests.set(ns, new Map());
      manifests.get(ns)!.set(e.object.metadata.name, e.object as ManifestObject);
    }
  };

  // The view holds them all: nothing to list.
  let allRead = false;
  if (rendered) {
    for (const m of rendered.owned('Manifest', key)) {
      const ns = m.metadata.namespace ?? '';
      if (!manifests.has(ns)) manifests.set(ns, new Map());
      manifests.get(ns)!.set(m.metadata.name, m as ManifestObject);
    }
    allRead = true;
  }
  const write = async (ops: StoreOp[]): Promise<Array<string | undefined>> => {
    const versions = await store.batch(ops);
    rendered?.wrote(ops, versions);
    return versions;
  };

  const manifestOps: StoreOp[] = [];
  const baseOps: StoreOp[] = [];
  const dropCluster = (ns: string): void => {
    for (const name of manifests.get(ns)?.keys() ?? []) manifestOps.push({ op: 'delete', kind: 'Manifest', key: { namespace: ns, name } });
    const base = bases.get(ns);
    if (base) baseOps.push({ op: 'delete', kind: 'Base', key: { namespace: ns, name: base.metadata.name } });
  };

  if (!subscription) {
    // Rare (a deletion): look everywhere, so Manifests whose Base is gone go too.
    if (!allRead) await readManifests();
    for (const ns of new Set([...manifests.keys(), ...bases.keys()])) dropCluster(ns);
    const ops = [...manifestOps, ...baseOps];
    return ops.length > 0 ? { batch: await write(ops) } : {};
  }
  // One list per namespace costs a store snapshot each: past a few clusters, one list of every Manifest is cheaper.
  const readAllManifests = async (): Promise<void> => {
    await readManifests();
    allRead = true;
  };
  if (allRead) {
    // From the view.
  } else if (bases.size >= manyClusters) await readAllManifests();
  else for (const ns of bases.keys()) await readManifests(ns);

  const sub = subscription as unknown as SubscriptionInput & SubscriptionRef & KubeObject;
  const oldStatus = (subscription.status ?? {}) as Status;
  const status: DeployerStatus = {
    conditions: Array.isArray(oldStatus.conditions) ? (oldStatus.conditions as Condition[]) : [],
    missingFeeds: [],
    unsupported: [],
    overrideFailures: [],
  };
  const spec = subscription.spec as Record<string, unknown> | undefined;
  let nextEvaluationAt: number | undefined;
  let rescheduled = false;

  const [clusterObjects, globList, locList] = await Promise.all([
    view ? view.clusters() : store.list('ManagedCluster').then((l) => l.items.map((e) => e.object as unknown as KubeObject)),
    store.list('Globalization'),
    store.list('Localization'),
  ]);
  const clusters = clusterObjects as unknown as ClusterInput[];
  const globalizations = globList.items.map((e) => e.object as unknown as Globalization);
  const localizations = locList.items.map((e) => e.object as unknown as Localization);

  if (!spec || !Array.isArray(spec.feeds) || !Array.isArray(spec.subscribers)) {
    status.conditions = setCondition(status.conditions, { type: 'Scheduled', status: 'False', reason: ErrorCode.InvalidScheduling, message: 'spec.feeds and spec.subscribers must be lists' }, now);
  } else {
    const feeds = spec.feeds as Feed[];
    const objects: KubeObject[] = [];
    const feedOrders: FeedOrder[] = [];
    for (const feed of feeds) {
      const object = await lookupFeed(store, feed);
      if (!object) continue;
      objects.push(object);
      feedOrders.push(feedOrderFor(feed, object));
    }
    const previous = (oldStatus.placement as Placement | undefined) ?? null;
    const result = schedule({ subscription: sub, feedOrders, clusters, now, previous });
    nextEvaluationAt = nextTolerationDeadline(sub, clusters, nowMs);
    if (!result.ok) {
      // Keep what was placed: a failed scheduling never empties clusters.
      status.conditions = setCondition(status.conditions, { type: 'Scheduled', status: 'False', reason: result.error.code, message: result.error.message }, now);
      for (const k of ['bindingClusters', 'replicas', 'placement', 'clusters'] as const) if (oldStatus[k] !== undefined) (status as unknown as Status)[k] = oldStatus[k];
    } else {
      rescheduled = rescheduleRequested(sub);
      const placement = result.placement;
      Object.assign(status, toSubscriptionStatus(placement));
      status.placement = placement;
      status.conditions = setCondition(
        status.conditions,
        { type: 'Scheduled', status: 'True', reason: 'Scheduled', message: `placed on ${placement.clusters.length} cluster(s)` },
        now,
      );
      const byKey = new Map(clusters.map((c) => [clusterKey(c), c]));
      const rows: ClusterRow[] = [];
      const renderedTemplates = new Map<string, KubeObject[]>();
      const placedNamespaces = new Set<string>();
      const unsupported = new Map<string, DeployerStatus['unsupported'][number]>();
      const missing = new Map<string, Feed>();
      // Every placed cluster's input first, then one render for all: the feeds are read and each override parsed once (renderSubscription).
      const placed: Array<{ pc: (typeof placement.clusters)[number]; ns: string; existing: Map<string, ManifestObject>; input: RenderInput }> = [];
      const unread = placement.clusters.filter((pc) => {
        const ns = byKey.get(pc.cluster.key)?.metadata.namespace;
        return ns !== undefined && !manifests.has(ns);
      }).length;
      if (!allRead && unread >= manyClusters) await readAllManifests();
      for (const pc of placement.clusters) {
        const cluster = byKey.get(pc.cluster.key);
        const ns = cluster?.metadata.namespace;
        if (!cluster || !ns) continue;
        placedNamespaces.add(ns);
        if (!manifests.has(ns)) {
          if (allRead) manifests.set(ns, new Map());
          else await readManifests(ns);
        }
        const existing = manifests.get(ns) ?? new Map<string, ManifestObject>();
        const replicas: Record<string, number> = {};
        for (const f of pc.feeds) if (f.replicas !== undefined) replicas[f.key] = f.replicas;
        const input: RenderInput = {
          subscription: sub,
          objects: objects as RenderObject[],
          cluster: { name: cluster.metadata.name, namespace: ns, id: cluster.spec.clusterId, labels: { ...(cluster.metadata.labels ?? {}) } },
          globalizations,
          localizations: localizations.filter((l) => l.metadata.namespace === ns),
          replicas,
          previous: {
            manifests: [...existing.values()].map(
              (m): RenderedManifest => ({ key: m.metadata.annotations[feedKeyAnnotation] ?? '', feed: m.feed, template: m.template as RenderObject, applied: [] }),
            ),
          },
        };
        placed.push({ pc, ns, existing, input });
      }
      const renderings = renderSubscription({
        subscription: sub,
        objects: objects as RenderObject[],
        globalizations,
        localizations,
        clusters: placed.map(({ input }) => ({ cluster: input.cluster, replicas: input.replicas!, previous: input.previous! })),
      });
      for (const [i, { pc, ns, existing }] of placed.entries()) {
        const prevBase = bases.get(ns);
        const prevState = prevBase?.status as BaseState | undefined;
        const row: ClusterRow = { cluster: pc.cluster.key, namespace: ns, clusterId: pc.cluster.clusterId, manifests: existing.size };
        if (prevState?.revision) row.revision = prevState.revision;
        if (pc.held) {
          row.held = pc.held;
          if (pc.message) row.message = pc.message;
        }
        const rendering = renderings[i]!;
        for (const f of rendering.missing) missing.set(feedKey(f), f);
        for (const u of rendering.unsupported) {
          const override = u.override ? `${ownerName(u.override)}:${u.override.override}` : undefined;
          unsupported.set(u.message, { code: u.code, message: u.message, ...(u.feed ? { feed: u.feed } : {}), ...(override ? { override } : {}) });
        }
        // A held cluster gets nothing new: it keeps its last rendering.
        if (pc.held && prevBase) {
          rows.push(row);
          continue;
        }
        const decision = decideRender(prevState?.inputs, rendering.inputs);
        if (!decision.render) {
          if (decision.waiting.length > 0) row.waiting = decision.waiting;
          rows.push(row);
          continue;
        }
        status.overrideFailures.push(...rendering.failures.map((p) => problemRow(pc.cluster.key, p)));
        const desired = new Set<string>();
        for (const m of rendering.manifests) {
          const object = toManifest(key, ns, m);
          desired.add(object.metadata.name);
          const had = existing.get(object.metadata.name);
          if (had && same(versionless(had), object)) continue;
          manifestOps.push({ op: 'put', kind: 'Manifest', key: { namespace: ns, name: object.metadata.name }, value: object });
        }
        for (const name of existing.keys()) if (!desired.has(name)) manifestOps.push({ op: 'delete', kind: 'Manifest', key: { namespace: ns, name } });
        const state: BaseState = { revision: rendering.revision, inputs: rendering.inputs };
        const base: KubeObject = { apiVersion: baseApiVersion, ...structuredClone(rendering.base), status: state };
        if (prevBase && prevBase.metadata.name !== base.metadata.name) baseOps.push({ op: 'delete', kind: 'Base', key: { namespace: ns, name: prevBase.metadata.name } });
        if (!prevBase || !same(versionless(prevBase), base)) baseOps.push({ op: 'put', kind: 'Base', key: { namespace: ns, name: base.metadata.name }, value: base });
        row.revision = rendering.revision;
        row.manifests = rendering.manifests.length;
        renderedTemplates.set(ns, rendering.manifests.map((m) => m.template as KubeObject));
        rows.push(row);
      }
      // What each cluster's agent reports back: Applied and Healthy (Clusternet's aggregated status).
      const desiredOf = new Map<string, ReadonlyMap<string, number>>();
      for (const row of rows) {
        // By revision: the set just rendered, or the one the store holds beside the Base of that revision (written in one batch).
        let desired = row.revision === undefined ? undefined : view?.desiredByRevision?.get(row.revision);
        if (!desired) {
          desired = desiredReplicas(renderedTemplates.get(row.namespace) ?? [...(manifests.get(row.namespace)?.values() ?? [])].map((m) => m.template as KubeObject));
          remember(view, row.revision, desired);
        }
        desiredOf.set(row.namespace, desired);
      }
      await foldHealth(store, key, rows, (ns) => desiredOf.get(ns) ?? new Map(), view);
      for (const c of healthConditions(rows)) status.conditions = setCondition(status.conditions, c, now);
      for (const ns of new Set([...manifests.keys(), ...bases.keys()])) if (!placedNamespaces.has(ns)) dropCluster(ns);
      status.clusters = rows;
      status.missingFeeds = [...missing.values()];
      status.unsupported = [...unsupported.values()];
    }
  }
  const failing = status.overrideFailures.length > 0;
  status.conditions = setCondition(
    status.conditions,
    failing
      ? { type: 'Rendered', status: 'False', reason: ErrorCode.OverrideFailed, message: `${status.overrideFailures.length} override failure(s); previous renderings stay` }
      : { type: 'Rendered', status: 'True', reason: 'Rendered', message: 'every selected cluster rendered' },
    now,
  );

  const next = withoutVersion(subscription);
  if (rescheduled) {
    const annotations = { ...(next.metadata.annotations ?? {}) };
    delete annotations[rescheduleAnnotation];
    next.metadata.annotations = annotations;
  }
  next.status = { ...oldStatus, ...status };
  const subOps: StoreOp[] = same(versionless(subscription), next)
    ? []
    : [{ op: 'put', kind: 'Subscription', key, value: next, expect: { resourceVersion: subscription.metadata.resourceVersion ?? '0' } }];
  // Manifests first and together: a watcher of Manifests sees one reconcile's set at consecutive versions.
  const ops = [...manifestOps, ...baseOps, ...subOps];
  const out: ReconcileResult = nextEvaluationAt !== undefined ? { nextEvaluationAt } : {};
  if (ops.length > 0) out.batch = await write(ops);
  await reportOnOverrides(store, key, status.overrideFailures, globList.items, locList.items);
  return out;
}

/** Sets each row's health from its cluster's agent report (none: no health). */
async function foldHealth(
  store: HubStore,
  key: SubscriptionKey,
  rows: ClusterRow[],
  desiredIn: (namespace: string) => ReadonlyMap<string, number>,
  view: ClusterView | undefined,
): Promise<void> {
  const subscriptionRef = `${key.namespace}/${key.name}`;
  for (const row of rows) {
    const clusterName = row.cluster.slice(row.cluster.indexOf('/') + 1);
    const desired = desiredIn(row.namespace);
    const report = view ? view.syncStatus(row.namespace, clusterName) : await store.get('ClusterSyncStatus', { namespace: row.namespace, name: clusterName });
    if (report) row.health = clusterHealth(report, subscriptionRef, desired);
    else delete row.health;
  }
}

/**
 * When only agents' reports changed since the last reconcile: the health
 * rows and the Applied/Healthy conditions, folded into the status the last
 * reconcile wrote, without scheduling and rendering every cluster again (what
 * a full reconcile would write, its placement and rendering being the same).
 * Undefined when that status is not one a full reconcile placed (no
 * Subscription, not Scheduled): the caller reconciles in full.
 */
export async function reconcileHealth(store: HubStore, key: SubscriptionKey, nowMs: number, view: ClusterView): Promise<ReconcileResult | undefined> {
  try {
    const subscription = await store.get('Subscription', key);
    const oldStatus = (subscription?.status ?? {}) as Status;
    const conditions = Array.isArray(oldStatus.conditions) ? (oldStatus.conditions as Condition[]) : [];
    if (!subscription || !Array.isArray(oldStatus.clusters) || !conditions.some((c) => c.type === 'Scheduled' && c.status === 'True')) return undefined;
    const rows = structuredClone(oldStatus.clusters) as ClusterRow[];
    const mine = (o: KubeObject): boolean => {
      const owner = ownerOf(o);
      return owner !== undefined && owner.namespace === key.namespace && owner.name === key.name;
    };
    // The rows' Manifest sets as the last full reconcile rendered them (by revision); read from the store only for rows it did not render.
    const desiredOf = new Map<string, ReadonlyMap<string, number>>();
    for (const r of rows) {
      const known = r.revision === undefined ? undefined : view.desiredByRevision?.get(r.revision);
      if (known) desiredOf.set(r.namespace, known);
    }
    const namespaces = new Set(rows.map((r) => r.namespace).filter((ns) => !desiredOf.has(ns)));
    if (namespaces.size > 0 && view.rendered) {
      const templates = new Map<string, KubeObject[]>();
      for (const m of view.rendered.owned('Manifest', key)) {
        const ns = m.metadata.namespace ?? '';
        if (!namespaces.has(ns)) continue;
        if (!templates.has(ns)) templates.set(ns, []);
        templates.get(ns)!.push((m as ManifestObject).template);
      }
      for (const ns of namespaces) desiredOf.set(ns, desiredReplicas(templates.get(ns) ?? []));
    } else if (namespaces.size > 0) {
      const templates = new Map<string, KubeObject[]>();
      const lists = namespaces.size >= manyClusters ? [await store.list('Manifest')] : await Promise.all([...namespaces].map((namespace) => store.list('Manifest', { namespace })));
      for (const list of lists) {
        for (const e of list.items) {
          const ns = e.object.metadata.namespace ?? '';
          if (!namespaces.has(ns) || !mine(e.object)) continue;
          if (!templates.has(ns)) templates.set(ns, []);
          templates.get(ns)!.push((e.object as ManifestObject).template);
        }
      }
      for (const ns of namespaces) desiredOf.set(ns, desiredReplicas(templates.get(ns) ?? []));
    }
    await foldHealth(store, key, rows, (ns) => desiredOf.get(ns) ?? new Map(), view);
    let nextConditions = conditions;
    const now = new Date(nowMs);
    for (const c of healthConditions(rows)) nextConditions = setCondition(nextConditions, c, now);
    // In a full reconcile's order: Rendered is set after Applied and Healthy.
    const rendered = conditions.find((c) => c.type === 'Rendered');
    if (rendered) nextConditions = setCondition(nextConditions, { type: rendered.type, status: rendered.status, reason: rendered.reason, message: rendered.message }, now);
    const next = withoutVersion(subscription);
    next.status = { ...oldStatus, conditions: nextConditions, clusters: rows };
    if (same(versionless(subscription), next)) return {};
    return { batch: await store.batch([{ op: 'put', kind: 'Subscription', key, value: next, expect: { resourceVersion: subscription.metadata.resourceVersion ?? '0' } }]) };
  } catch (error) {
    if (isConflict(error)) return { retry: true };
    throw error;
  }
}

/** Each Localization/Globalization's status.failures: this subscription's rows replaced by its current ones. */
async function reportOnOverrides(
  store: HubStore,
  key: SubscriptionKey,
  failures: readonly OverrideFailureRow[],
  globs: ReadonlyArray<{ object: KubeObject }>,
  locs: ReadonlyArray<{ object: KubeObject }>,
): Promise<void> {
  const subscription = `${key.namespace}/${key.name}`;
  const byOwner = new Map<string, Array<OverrideFailureRow & { subscription: string }>>();
  for (const f of failures) {
    if (!f.override) continue;
    const owner = f.override.slice(0, f.override.lastIndexOf(':'));
    if (!byOwner.has(owner)) byOwner.set(owner, []);
    byOwner.get(owner)!.push({ subscription, ...f });
  }
  const owners: Array<{ kind: 'Globalization' | 'Localization'; object: KubeObject }> = [
    ...globs.map((e) => ({ kind: 'Globalization' as const, object: e.object })),
    ...locs.map((e) => ({ kind: 'Localization' as const, object: e.object })),
  ];
  for (const { kind, object } of owners) {
    const name = ownerName({ kind, ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}), name: object.metadata.name });
    const status = (object.status ?? {}) as Status;
    const old = Array.isArray(status.failures) ? (status.failures as Array<{ subscription?: string }>) : [];
    const kept = old.filter((f) => f.subscription !== subscription);
    const mineNow = byOwner.get(name) ?? [];
    if (kept.length === old.length && mineNow.length === 0) continue;
    const failuresNext = [...kept, ...mineNow];
    if (same(old, failuresNext)) continue;
    const next = withoutVersion(object);
    next.status = { ...status, failures: failuresNext };
    const objectKey = { ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}), name: object.metadata.name };
    await store.put(kind, objectKey, next, { expect: { resourceVersion: object.metadata.resourceVersion ?? '0' } });
  }
}
