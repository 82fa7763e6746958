// The deployer's rendering inputs and outputs. Field names are Clusternet's
// JSON names (pkg/apis/apps/v1alpha1), narrowed to what rendering reads, so
// the API's full types fit wherever these are asked for.

import type { ErrorCode } from '../../tunnel/index.js';

/** A JSON value as parsed from a manifest or a patch. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Any Kubernetes-style object: a fed template, a Description, one of its raw objects. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** Clusternet's Feed: the object a Subscription, Localization or Globalization names. */
export interface Feed {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export const overrideTypes = ['Helm', 'JSONPatch', 'MergePatch', 'FieldJSONPatch', 'FieldMergePatch'] as const;
export type OverrideType = (typeof overrideTypes)[number];
export type FieldFormat = 'YAML' | 'JSON';
export type OverridePolicy = 'ApplyNow' | 'ApplyLater';

/** Clusternet's OverrideConfig. `value` is JSON or YAML text. */
export interface OverrideConfig {
  name?: string;
  value: string;
  type: OverrideType | string;
  overrideChart?: boolean;
  /** A JSON pointer to a string field, for the Field* types. */
  fieldPath?: string;
  /** The format of that field's text; YAML when absent (Clusternet's default). */
  fieldFormat?: FieldFormat | string;
}

export interface OverrideSpec {
  /** Clusternet's default is ApplyLater. */
  overridePolicy?: OverridePolicy | string;
  overrides?: OverrideConfig[];
  /** 0..1000; Clusternet's default is 500. */
  priority?: number;
  feed?: Feed;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

interface OverrideMeta {
  name: string;
  namespace?: string;
  resourceVersion?: string;
  [key: string]: unknown;
}

/** Lives in one cluster's dedicated namespace; applies to that cluster only. */
export interface Localization {
  apiVersion?: string;
  kind?: 'Localization';
  metadata: OverrideMeta & { namespace: string };
  spec: OverrideSpec;
}

/** Cluster-scoped; applies to every cluster its clusterAffinity selects (all when absent). */
export interface Globalization {
  apiVersion?: string;
  kind?: 'Globalization';
  metadata: OverrideMeta;
  spec: OverrideSpec & { clusterAffinity?: LabelSelector };
}

export interface SubscriptionRef {
  metadata: { name: string; namespace: string; uid?: string; [key: string]: unknown };
  spec: { feeds: Feed[]; [key: string]: unknown };
}

/** The cluster a rendering is for, as the scheduler placed it. */
export interface RenderCluster {
  name: string;
  /** Its dedicated namespace on the hub: where its Localizations and Base live. */
  namespace: string;
  id: string;
  labels: Record<string, string>;
}

/** Clusternet's Base: the subscription's feeds as bound to one cluster. */
export interface Base {
  kind: 'Base';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: { feeds: Feed[] };
}

/** One rendered object of a cluster: what the hub stores as a Manifest's template. */
export interface RenderedManifest {
  /** Clusternet's feed key of the object: apiVersion/kind[/namespace]/name. */
  key: string;
  /** The subscription's feed it came from (a Description for its raw objects). */
  feed: Feed;
  template: KubeObject;
  /** Overrides applied, in order, as "Kind/[namespace/]name:overrideName". */
  applied: string[];
  /** True when an override failed and this is the previous rendering kept in place. */
  stale?: true;
}

export interface OverrideRef {
  kind: 'Localization' | 'Globalization';
  namespace?: string;
  name: string;
  /** The OverrideConfig's name, or its index when it has none. */
  override: string;
}

/** Something rendering could not do: reported on the override and the subscription. */
export interface RenderProblem {
  code: ErrorCode;
  /** Names the override, the object and the reason. */
  message: string;
  reason: string;
  override?: OverrideRef;
  /** The object concerned (its key), when there is one. */
  object?: string;
  feed?: Feed;
}

/** Content digests of what a rendering was made from: ApplyLater compares them. */
export interface RenderInputs {
  subscription: string;
  cluster: string;
  replicas: string;
  /** Feed key -> digest of the hub object it resolved to ("missing" when none). */
  feeds: Record<string, string>;
  /** "Kind/[namespace/]name" -> digest of its spec, and its policy, for each override that concerns this rendering. */
  overrides: Record<string, { digest: string; overridePolicy: OverridePolicy }>;
}

export interface ClusterRendering {
  cluster: string;
  base: Base;
  /** Sorted by key. */
  manifests: RenderedManifest[];
  /** sha256 of the rendered set (keys and templates), independent of key order. */
  revision: string;
  inputs: RenderInputs;
  /** Overrides that could not apply, and objects that could not render. */
  failures: RenderProblem[];
  /** Helm overrides and HelmChart feeds: stored and reported, not rendered. */
  unsupported: RenderProblem[];
  /** Feeds naming an object not (yet) on the hub: not an error; they render once it appears. */
  missing: Feed[];
}

export interface RenderInput {
  subscription: SubscriptionRef;
  /** The hub objects the feeds name, in any order: native templates, Descriptions, HelmCharts. */
  objects: readonly KubeObject[];
  cluster: RenderCluster;
  /** All Globalizations; rendering keeps those whose clusterAffinity selects the cluster. */
  globalizations: readonly Globalization[];
  /** Localizations; rendering keeps those in the cluster's namespace. */
  localizations: readonly Localization[];
  /** The scheduler's replicas for this cluster, by feed key (Dividing only). */
  replicas?: Readonly<Record<string, number>>;
  /** The cluster's previous rendering of this subscription: kept per object when an override fails. */
  previous?: Pick<ClusterRendering, 'manifests'>;
}
