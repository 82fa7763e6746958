// Subscription + feeds -> a Base per cluster -> Globalizations, then
// Localizations -> the cluster's Manifest set, with a revision. Pure: the hub
// reads everything first and passes it in as data.
//
// Order of overrides on one object (Clusternet's getOverrides):
//   1. Globalizations whose clusterAffinity selects the cluster (all when it
//      has none), in ascending priority (default 500); ties by name.
//   2. Localizations in the cluster's dedicated namespace, in ascending
//      priority; ties by name. (Clusternet breaks ties by creation time, to
//      the second within a minute: not an order a user can rely on.)
//   Within one of them, its overrides in the order listed.
//   3. The scheduler's replicas for the object, last, as Clusternet's
//      deployer does with a priority-1000 Localization, so a divided sum stays
//      what the scheduler made it.
// An override applies to an object when its feed names the subscription feed
// the object came from (a Description: all its objects) or the object itself.
// All overrides of an object apply, or none: on a failure the previous
// rendering of that object stays (or, with none, the object waits) and the
// failure is reported.

import { boundedText, clusterIdLabel, clusterNameLabel } from '../../api/index.js';
import { ErrorCode } from '../../tunnel/index.js';
import { canonicalJson, digestOf } from './digest.js';
import { describeFeed, feedKey, feedOf, groupOf, identityOf, isAppsKind } from './identity.js';
import { applyFieldPatch, applyJsonPatch, applyMergePatch, parseJsonOrYaml, type PatchResult } from './patch.js';
import { selectorMatches, selectorProblems } from '../../scheduler/index.js';
import type {
  Base,
  ClusterRendering,
  Feed,
  JsonValue,
  KubeObject,
  Localization,
  OverrideConfig,
  OverridePolicy,
  OverrideRef,
  OverrideSpec,
  RenderCluster,
  RenderedManifest,
  RenderInput,
  RenderInputs,
  RenderProblem,
} from './types.js';

export const defaultPriority = 500;
/** Clusternet's CRD default. */
export const defaultOverridePolicy: OverridePolicy = 'ApplyLater';

/** Fields the hub's store or a kube-apiserver set on a template: never sent to a child cluster. */
const serverMetadataFields = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
  'ownerReferences',
];
const lastAppliedAnnotation = 'kubectl.kubernetes.io/last-applied-configuration';

/** Workload kinds the scheduler divides, and the field its replicas go to. */
const replicaFields: Readonly<Record<string, string>> = {
  'apps|Deployment': 'replicas',
  'apps|StatefulSet': 'replicas',
  'apps|ReplicaSet': 'replicas',
  'batch|Job': 'parallelism',
};

interface Owner {
  kind: 'Globalization' | 'Localization';
  namespace?: string;
  name: string;
  spec: OverrideSpec;
  /** Why a Globalization's clusterAffinity cannot be evaluated. */
  invalidAffinity?: string;
}

/** One object to render: a native feed, or one raw object of a Description feed. */
interface Unit {
  key: string;
  identity: string;
  feed: Feed;
  feedIdentity: string;
  fromDescription: boolean;
  object: KubeObject;
}

/** What rendering takes from the subscription and its feeds: the same for every cluster, so made once. */
interface FedSet {
  units: Unit[];
  problems: RenderProblem[];
  unsupported: RenderProblem[];
  missing: Feed[];
  feedDigests: Record<string, string>;
  subscriptionDigest: string;
  /** Identities an override may name: the feeds and the objects they yield. */
  targets: Set<string>;
}

/** The objects rendered with one set of overrides and replicas, and their revision when none failed. */
interface SharedRendering {
  outcomes: ObjectOutcome[];
  revision?: string;
}

/**
 * Work shared by the renderings of one subscription: parsed override values,
 * override digests, and each distinct rendering (Replication without
 * per-cluster overrides renders the same objects for every cluster: once).
 */
interface Memo {
  values: Map<string, PatchResult>;
  digests: WeakMap<object, string>;
  renderings: Map<string, SharedRendering>;
}

function newMemo(): Memo {
  return { values: new Map(), digests: new WeakMap(), renderings: new Map() };
}

/** Rendered objects are shared by every cluster that renders them alike: frozen, so no reader can change another cluster's copy. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function priorityOf(spec: OverrideSpec): number {
  return typeof spec.priority === 'number' ? spec.priority : defaultPriority;
}

function byPriorityThenName(a: Owner, b: Owner): number {
  const p = priorityOf(a.spec) - priorityOf(b.spec);
  if (p !== 0) return p;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * "Kind/[namespace/]name" of a Localization or Globalization: the key of
 * RenderInputs.overrides and of a decision's `waiting`, and where a
 * RenderProblem's override (problem.override) is to be reported.
 */
export function ownerName(owner: Pick<OverrideRef, 'kind' | 'namespace' | 'name'>): string {
  return `${owner.kind}/${owner.namespace ? `${owner.namespace}/` : ''}${owner.name}`;
}

function refText(ref: OverrideRef): string {
  return `${ownerName(ref)}:${ref.override}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isKubeObject(value: unknown): value is KubeObject {
  return (
    isObject(value) &&
    typeof value.apiVersion === 'string' &&
    typeof value.kind === 'string' &&
    isObject(value.metadata) &&
    typeof value.metadata.name === 'string' &&
    (value.metadata.namespace === undefined || typeof value.metadata.namespace === 'string')
  );
}

/** A private copy of a template without what a store or an apiserver put on it. */
function templateOf(object: KubeObject): KubeObject {
  const copy = structuredClone(object);
  delete copy.status;
  for (const field of serverMetadataFields) delete copy.metadata[field];
  const annotations = copy.metadata.annotations;
  if (isObject(annotations) && lastAppliedAnnotation in annotations) {
    delete annotations[lastAppliedAnnotation];
    if (Object.keys(annotations).length === 0) delete copy.metadata.annotations;
  }
  return copy;
}

/** A Description's raw object: an object as hawser stores it, or base64 JSON bytes as Clusternet's [][]byte. */
function decodeRaw(raw: unknown): KubeObject | string {
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
    } catch {
      return 'is text that is not base64-encoded JSON';
    }
  }
  return isKubeObject(value) ? value : 'is not an object with apiVersion, kind and metadata.name';
}

function labelsOf(cluster: RenderCluster): Record<string, string> {
  return { [clusterIdLabel]: cluster.id, [clusterNameLabel]: cluster.name, ...cluster.labels };
}

function collectFeeds(subscription: RenderInput['subscription'], objects: RenderInput['objects']): FedSet {
  const problems: RenderProblem[] = [];
  const unsupported: RenderProblem[] = [];
  const missing: Feed[] = [];
  const feedDigests: Record<string, string> = {};

  const byIdentity = new Map<string, KubeObject>();
  for (const object of objects) {
    const id = identityOf(feedOf(object));
    if (!byIdentity.has(id)) byIdentity.set(id, object);
  }

  const units: Unit[] = [];
  const seen = new Map<string, Feed>();
  const addUnit = (feed: Feed, object: KubeObject, fromDescription: boolean): void => {
    const own = feedOf(object);
    const identity = identityOf(own);
    const key = feedKey(own);
    const first = seen.get(identity);
    if (first) {
      problems.push({
        code: ErrorCode.RenderFailed,
        reason: `also fed by ${describeFeed(first)}`,
        message: `${describeFeed(own)} is fed by both ${describeFeed(first)} and ${describeFeed(feed)}; the first feed's copy renders`,
        object: key,
        feed,
      });
      return;
    }
    seen.set(identity, feed);
    units.push({ key, identity, feed, feedIdentity: identityOf(feed), fromDescription, object: templateOf(object) });
  };

  for (const feed of subscription.spec.feeds) {
    const object = byIdentity.get(identityOf(feed));
    const fKey = feedKey(feed);
    if (!object) {
      missing.push(feed);
      feedDigests[fKey] = 'missing';
      continue;
    }
    feedDigests[fKey] = digestOf(templateOf(object));
    if (isAppsKind(feed, 'HelmChart') || (isAppsKind(feed, 'Description') && isObject(object.spec) && object.spec.deployer === 'Helm')) {
      unsupported.push({
        code: ErrorCode.Unsupported,
        reason: 'Helm charts are not built yet',
        message: `${describeFeed(feed)}: Helm charts are not built yet; the subscription's other feeds still deploy`,
        feed,
      });
      continue;
    }
    if (isAppsKind(feed, 'Description')) {
      const raws = isObject(object.spec) && Array.isArray(object.spec.raw) ? (object.spec.raw as unknown[]) : [];
      for (const [index, raw] of raws.entries()) {
        const decoded = decodeRaw(raw);
        if (typeof decoded === 'string') {
          problems.push({
            code: ErrorCode.RenderFailed,
            reason: `spec.raw[${index}] ${decoded}`,
            message: `${describeFeed(feed)}: spec.raw[${index}] ${decoded}; it is not rendered`,
            feed,
          });
          continue;
        }
        addUnit(feed, decoded, true);
      }
      continue;
    }
    addUnit(feed, object, false);
  }

  const targets = new Set<string>(subscription.spec.feeds.map(identityOf));
  for (const u of units) targets.add(u.identity);
  const { metadata, spec } = subscription;
  const subscriptionDigest = digestOf({ name: metadata.name, namespace: metadata.namespace, uid: metadata.uid, feeds: spec.feeds });
  return { units, problems, unsupported, missing, feedDigests, subscriptionDigest, targets };
}

/** The Globalizations that select the cluster and the cluster's Localizations that concern these feeds, in the order they apply. */
function ownersFor(fed: FedSet, input: Pick<RenderInput, 'cluster' | 'globalizations' | 'localizations'>): Owner[] {
  const labels = labelsOf(input.cluster);
  const concerns = (spec: OverrideSpec): boolean => spec.feed !== undefined && fed.targets.has(identityOf(spec.feed));
  const globs: Owner[] = [];
  for (const g of input.globalizations) {
    if (!concerns(g.spec)) continue;
    const owner: Owner = { kind: 'Globalization', name: g.metadata.name, spec: g.spec };
    if (g.spec.clusterAffinity) {
      // An invalid selector selects no cluster silently: the override reports it on every cluster it names.
      const [problem] = selectorProblems(g.spec.clusterAffinity, 'spec.clusterAffinity');
      if (problem) owner.invalidAffinity = problem;
      else if (!selectorMatches(g.spec.clusterAffinity, labels)) continue;
    }
    globs.push(owner);
  }
  const locs: Owner[] = input.localizations
    .filter((l: Localization) => l.metadata.namespace === input.cluster.namespace && concerns(l.spec))
    .map((l) => ({ kind: 'Localization' as const, namespace: l.metadata.namespace, name: l.metadata.name, spec: l.spec }));
  return [...globs.sort(byPriorityThenName), ...locs.sort(byPriorityThenName)];
}

function policyOf(spec: OverrideSpec): OverridePolicy {
  return spec.overridePolicy === 'ApplyNow' ? 'ApplyNow' : spec.overridePolicy === 'ApplyLater' ? 'ApplyLater' : defaultOverridePolicy;
}

function inputsOf(input: RenderInput, fed: FedSet, owners: readonly Owner[], memo: Memo): RenderInputs {
  const overrides: RenderInputs['overrides'] = {};
  for (const owner of owners) {
    let digest = memo.digests.get(owner.spec);
    if (digest === undefined) {
      digest = digestOf(owner.spec);
      memo.digests.set(owner.spec, digest);
    }
    overrides[ownerName(owner)] = { digest, overridePolicy: policyOf(owner.spec) };
  }
  return {
    subscription: fed.subscriptionDigest,
    cluster: digestOf(input.cluster),
    replicas: digestOf(input.replicas ?? {}),
    feeds: { ...fed.feedDigests },
    overrides,
  };
}

/** Digests of what a rendering for this input would be made from: compare with decideRender before rendering. */
export function renderInputs(input: RenderInput): RenderInputs {
  const fed = collectFeeds(input.subscription, input.objects);
  return inputsOf(input, fed, ownersFor(fed, input), newMemo());
}

type ObjectOutcome =
  | { ok: true; template: KubeObject; applied: string[]; unsupported: RenderProblem[] }
  | { ok: false; failure: RenderProblem; unsupported: RenderProblem[] };

function overrideFailure(ref: OverrideRef, type: string, unit: Unit, reason: string): RenderProblem {
  return {
    code: ErrorCode.OverrideFailed,
    reason,
    message:
      `override ${boundedText(ref.override, 64)} (${boundedText(type, 32)}) of ${ownerName(ref)} cannot apply to ` +
      `${describeFeed(feedOf(unit.object))}: ${reason}; no override applies to the object, and its previous rendering stays`,
    override: ref,
    object: unit.key,
  };
}

function applyOne(work: JsonValue, override: OverrideConfig, unit: Unit, namesWholeDescription: boolean, memo: Memo): PatchResult {
  let parsed = memo.values.get(override.value);
  if (parsed === undefined) {
    parsed = parseJsonOrYaml(override.value);
    memo.values.set(override.value, parsed);
  }
  if (!parsed.ok) return { ok: false, reason: `its value ${parsed.reason}` };
  // A merge patch's result shares the patch's subtrees, and a later JSON patch edits in place: each object gets its own copy.
  const value = { value: structuredClone(parsed.value) };
  const isJsonPatch = override.type === 'JSONPatch' || override.type === 'FieldJSONPatch';
  if (isJsonPatch && namesWholeDescription) {
    return {
      ok: false,
      reason: `a ${override.type} must name one object, not ${describeFeed(unit.feed)}: name the object inside it in the feed`,
    };
  }
  switch (override.type) {
    case 'JSONPatch':
      return applyJsonPatch(work, value.value);
    case 'MergePatch':
      return { ok: true, value: applyMergePatch(work, value.value) };
    case 'FieldJSONPatch':
      return applyFieldPatch(work, override, 'json', value.value);
    case 'FieldMergePatch':
      return applyFieldPatch(work, override, 'merge', value.value);
    default:
      return { ok: false, reason: `unknown override type ${JSON.stringify(boundedText(override.type, 32))}` };
  }
}

function renderObject(unit: Unit, owners: readonly Owner[], replicas: Readonly<Record<string, number>>, memo: Memo): ObjectOutcome {
  let work: JsonValue = structuredClone(unit.object) as unknown as JsonValue;
  const applied: string[] = [];
  const unsupported: RenderProblem[] = [];
  for (const owner of owners) {
    const target = identityOf(owner.spec.feed as Feed);
    if (target !== unit.feedIdentity && target !== unit.identity) continue;
    const namesWholeDescription = unit.fromDescription && target === unit.feedIdentity;
    for (const [index, override] of (owner.spec.overrides ?? []).entries()) {
      const ref: OverrideRef = {
        kind: owner.kind,
        ...(owner.namespace ? { namespace: owner.namespace } : {}),
        name: owner.name,
        override: override.name || `#${index}`,
      };
      if (owner.invalidAffinity) {
        return { ok: false, failure: overrideFailure(ref, override.type, unit, `its clusterAffinity is invalid: ${owner.invalidAffinity}`), unsupported };
      }
      if (override.type === 'Helm' || override.overrideChart) {
        unsupported.push({
          code: ErrorCode.Unsupported,
          reason: 'Helm overrides are not built yet',
          message: `override ${boundedText(ref.override, 64)} of ${ownerName(ref)}: Helm overrides are not built yet; it is not applied`,
          override: ref,
        });
        continue;
      }
      // As Clusternet: an override with an empty value changes nothing.
      if (override.value.trim() === '') continue;
      const result = applyOne(work, override, unit, namesWholeDescription, memo);
      if (!result.ok) return { ok: false, failure: overrideFailure(ref, override.type, unit, result.reason), unsupported };
      work = result.value;
      applied.push(refText(ref));
    }
  }
  // The object's identity keys its Manifest and its ownership in the child: overrides change its content only.
  if (!isKubeObject(work) || identityOf(feedOf(work)) !== unit.identity) {
    const reason = "overrides may not change an object's group, kind, namespace or name";
    return {
      ok: false,
      failure: {
        code: ErrorCode.OverrideFailed,
        reason,
        message: `overrides ${applied.join(', ')} of ${describeFeed(feedOf(unit.object))}: ${reason}; no override applies to the object, and its previous rendering stays`,
        object: unit.key,
      },
      unsupported,
    };
  }
  const template = work;
  const field = replicaFields[`${groupOf(template.apiVersion)}|${template.kind}`];
  // A native feed's key may differ from its object's in the version only; a Description's replicas are per object.
  const divided = replicas[unit.key] ?? (unit.fromDescription ? undefined : replicas[feedKey(unit.feed)]);
  if (field !== undefined && divided !== undefined && Number.isSafeInteger(divided) && divided >= 0) {
    if (!isObject(template.spec)) template.spec = {};
    (template.spec as Record<string, unknown>)[field] = divided;
  }
  return { ok: true, template, applied, unsupported };
}

function baseOf(input: RenderInput): Base {
  const { name, namespace, uid } = input.subscription.metadata;
  // Clusternet names a Base <subscription>-<random>; a digest of the
  // subscription's namespace and name keeps it unique per subscription and stable.
  const suffix = digestOf(`${namespace}/${name}`).slice(0, 5);
  const labels: Record<string, string> = {
    'apps.clusternet.io/subs.name': name,
    'apps.clusternet.io/subs.namespace': namespace,
  };
  if (uid) labels['apps.clusternet.io/subs.uid'] = uid;
  return {
    kind: 'Base',
    metadata: { name: `${name.slice(0, 247)}-${suffix}`, namespace: input.cluster.namespace, labels },
    spec: { feeds: structuredClone(input.subscription.spec.feeds) },
  };
}

/** The revision of a rendered set: its keys and templates, not their order or key order. */
export function revisionOf(manifests: readonly Pick<RenderedManifest, 'key' | 'template'>[]): string {
  const sorted = [...manifests].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return digestOf(sorted.map((m) => [m.key, m.template]));
}

/** Renders one subscription for one cluster. */
export function renderCluster(input: RenderInput): ClusterRendering {
  return renderFed(collectFeeds(input.subscription, input.objects), input, newMemo());
}

function renderFed(fed: FedSet, input: RenderInput, memo: Memo): ClusterRendering {
  const owners = ownersFor(fed, input);
  const failures = [...fed.problems];
  const unsupported = [...fed.unsupported];
  const seenUnsupported = new Set<string>();
  const previous = new Map((input.previous?.manifests ?? []).map((m) => [m.key, m]));
  const manifests: RenderedManifest[] = [];
  // What the objects are rendered from, beside the feeds: the overrides that apply (each one's name names its spec within one subscription's rendering) and the replicas.
  const sharing = `${owners.map((o) => `${ownerName(o)}${o.invalidAffinity === undefined ? '' : '!'}`).join('\n')}\n\n${canonicalJson(input.replicas ?? {})}`;
  let shared = memo.renderings.get(sharing);
  if (!shared) {
    shared = { outcomes: fed.units.map((unit) => deepFreeze(renderObject(unit, owners, input.replicas ?? {}, memo))) };
    memo.renderings.set(sharing, shared);
  }
  for (const [index, unit] of fed.units.entries()) {
    const outcome = shared.outcomes[index]!;
    for (const u of outcome.unsupported) {
      const id = u.override ? refText(u.override) : u.message;
      if (seenUnsupported.has(id)) continue;
      seenUnsupported.add(id);
      unsupported.push(u);
    }
    if (outcome.ok) {
      manifests.push({ key: unit.key, feed: { ...unit.feed }, template: outcome.template, applied: [...outcome.applied] });
      continue;
    }
    failures.push(outcome.failure);
    const kept = previous.get(unit.key);
    if (kept) manifests.push({ ...structuredClone(kept), stale: true });
  }
  manifests.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  // Without a failure, the set is the shared outcomes' alone: its revision too.
  const fresh = shared.outcomes.every((o) => o.ok);
  const revision = fresh ? (shared.revision ??= revisionOf(manifests)) : revisionOf(manifests);
  return {
    cluster: input.cluster.name,
    base: baseOf(input),
    manifests,
    revision,
    inputs: inputsOf(input, fed, owners, memo),
    failures,
    unsupported,
    missing: [...fed.missing],
  };
}

export interface SubscriptionRenderInput extends Omit<RenderInput, 'cluster' | 'replicas' | 'previous'> {
  /** The clusters the scheduler placed the subscription on, each with its replicas and previous rendering. */
  clusters: ReadonlyArray<Pick<RenderInput, 'cluster' | 'replicas' | 'previous'>>;
}

/**
 * A Base and a Manifest set per placed cluster, in the order the clusters are
 * given; the same as renderCluster for each, with the feeds read, and each
 * override value parsed, once.
 */
export function renderSubscription(input: SubscriptionRenderInput): ClusterRendering[] {
  const { clusters, ...shared } = input;
  const fed = collectFeeds(shared.subscription, shared.objects);
  const memo = newMemo();
  const byNamespace = new Map<string, Localization[]>();
  for (const l of shared.localizations) {
    const list = byNamespace.get(l.metadata.namespace);
    if (list) list.push(l);
    else byNamespace.set(l.metadata.namespace, [l]);
  }
  return clusters.map((c) => renderFed(fed, { ...shared, ...c, localizations: byNamespace.get(c.cluster.namespace) ?? [] }, memo));
}
