import * as v from 'valibot';
import { parse as parseYaml } from 'yaml';
import { appsApiVersion, canonicalApiVersion, clusternetAppsApiVersion } from './kinds.js';
import {
  feed,
  int32,
  labelSelector,
  nonNegativeInt32,
  objectMeta,
  preferredSchedulingTerm,
  subdomainName,
  toleration,
  topologySpreadConstraint,
} from './schema.js';

// Clusternet's apps.clusternet.io/v1alpha1 kinds (pkg/apis/apps/v1alpha1),
// field for field by their json tags, with the defaults of Clusternet's CRDs.
// hawser stores them under its own group (apps.hawser.io/v1alpha1); the
// Clusternet group is accepted as an alias, so Clusternet YAML applies as it is.

/** A Subscription naming more feeds than this is refused (HAWSER_TOO_MANY_FEEDS). */
export const maxFeeds = 1_000;
/** Localization and Globalization priority: 0..1000, default 500 (Clusternet's). */
export const defaultOverridePriority = 500;

const appsApiVersionField = v.pipe(
  v.picklist([appsApiVersion, clusternetAppsApiVersion]),
  v.transform((apiVersion): typeof appsApiVersion => canonicalApiVersion(apiVersion) as typeof appsApiVersion),
);
const meta = objectMeta(subdomainName);
/** Status is the hub's to write: accepted on apply (as `get -o yaml` prints it) and dropped. */
const ignoredStatus = v.optional(v.unknown());

function withoutStatus<T extends { status?: unknown }>(o: T): Omit<T, 'status'> {
  const { status: _status, ...rest } = o;
  return rest;
}

// ---- overrides (Localization, Globalization) ----

export const overrideTypes = ['Helm', 'JSONPatch', 'MergePatch', 'FieldJSONPatch', 'FieldMergePatch'] as const;
export type OverrideType = (typeof overrideTypes)[number];
export const overridePolicies = ['ApplyNow', 'ApplyLater'] as const;
const jsonPatchOps = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test']);

/** Why a JSON Patch document (already parsed) is not one; undefined when it is. */
function jsonPatchProblem(doc: unknown): string | undefined {
  if (!Array.isArray(doc)) return 'must be a list of JSON Patch operations (RFC 6902)';
  for (const [i, op] of doc.entries()) {
    if (op === null || typeof op !== 'object' || Array.isArray(op)) return `operation ${i} must be an object with op and path`;
    const o = op as Record<string, unknown>;
    if (typeof o.op !== 'string' || !jsonPatchOps.has(o.op)) return `operation ${i}: op must be one of ${[...jsonPatchOps].join(', ')}`;
    if (typeof o.path !== 'string' || (o.path !== '' && !o.path.startsWith('/'))) return `operation ${i}: path must be a JSON pointer ("" or starting with "/")`;
    if ((o.op === 'move' || o.op === 'copy') && typeof o.from !== 'string') return `operation ${i}: ${o.op} needs from`;
    if ((o.op === 'add' || o.op === 'replace' || o.op === 'test') && !('value' in o)) return `operation ${i}: ${o.op} needs value`;
  }
  return undefined;
}

function isMapping(doc: unknown): boolean {
  return doc !== null && typeof doc === 'object' && !Array.isArray(doc);
}

/** Why an override's value cannot be the patch its type says; parsed as YAML, which JSON is a subset of. */
export function overrideValueProblem(type: OverrideType, value: string): string | undefined {
  let doc: unknown;
  try {
    doc = parseYaml(value);
  } catch (err) {
    return `is not valid JSON or YAML (${(err as Error).message.split('\n')[0]})`;
  }
  switch (type) {
    case 'JSONPatch':
    case 'FieldJSONPatch':
      return jsonPatchProblem(doc);
    case 'MergePatch':
    case 'FieldMergePatch':
    case 'Helm':
      return isMapping(doc) ? undefined : 'must be a mapping (an object)';
  }
}

export const overrideConfig = v.pipe(
  v.strictObject({
    name: v.optional(v.string()),
    value: v.string(),
    type: v.picklist(overrideTypes),
    overrideChart: v.optional(v.boolean()),
    fieldPath: v.optional(v.string()),
    fieldFormat: v.optional(v.picklist(['YAML', 'JSON'])),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const o = dataset.value;
    const problem = overrideValueProblem(o.type, o.value);
    if (problem) addIssue({ message: problem, path: [{ type: 'object', origin: 'value', input: o, key: 'value', value: o.value }] });
    const fieldPatch = o.type === 'FieldJSONPatch' || o.type === 'FieldMergePatch';
    if (fieldPatch && !o.fieldPath?.startsWith('/')) {
      addIssue({ message: `fieldPath must be a JSON pointer to the field ("/data/app.conf") for type ${o.type}` });
    }
    if (!fieldPatch && (o.fieldPath || o.fieldFormat)) addIssue({ message: `fieldPath and fieldFormat go with FieldJSONPatch and FieldMergePatch only, not ${o.type}` });
  }),
);
export type OverrideConfig = v.InferOutput<typeof overrideConfig>;

const overridePriority = v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000)), defaultOverridePriority);

// ---- Subscription ----

export const schedulingStrategies = ['Replication', 'Dividing'] as const;

const subscriber = v.strictObject({
  clusterAffinity: labelSelector,
  weight: v.optional(nonNegativeInt32),
  subGroupStrategy: v.optional(v.strictObject({ minClusters: v.optional(nonNegativeInt32) })),
});
export type Subscriber = v.InferOutput<typeof subscriber>;

const dynamicDividing = v.strictObject({
  strategy: v.optional(v.picklist(['Spread', 'Binpack']), 'Spread'),
  topologySpreadConstraints: v.optional(v.array(topologySpreadConstraint)),
  preferredClusters: v.optional(v.array(preferredSchedulingTerm)),
  minClusters: v.optional(nonNegativeInt32),
  maxClusters: v.optional(nonNegativeInt32),
});

const dividingScheduling = v.strictObject({
  type: v.optional(v.picklist(['Static', 'Dynamic']), 'Static'),
  dynamicDividing: v.optional(dynamicDividing),
});
export type DividingScheduling = v.InferOutput<typeof dividingScheduling>;

const subscriptionSpec = v.pipe(
  v.strictObject({
    schedulerName: v.optional(v.string(), 'default'),
    schedulingBySubGroup: v.optional(v.boolean()),
    schedulingStrategy: v.optional(v.picklist(schedulingStrategies), 'Replication'),
    dividingScheduling: v.optional(dividingScheduling),
    /** No default, as in Clusternet: the scheduler reads an absent priority as 0. */
    priority: v.optional(int32),
    // Clusternet's CRD enumerates PreemptNever, its Go constant is "Never": both mean the same.
    preemptionPolicy: v.optional(v.picklist(['PreemptLowerPriority', 'PreemptNever', 'Never']), 'PreemptLowerPriority'),
    subscribers: v.array(subscriber),
    clusterTolerations: v.optional(v.array(toleration)),
    feeds: v.pipe(v.array(feed), v.maxLength(maxFeeds, `must name at most ${maxFeeds} feeds`)),
  }),
  v.transform((spec) =>
    // Dividing without dividingScheduling divides statically, as Clusternet's CRD default does once the field is there.
    spec.schedulingStrategy === 'Dividing' && !spec.dividingScheduling ? { ...spec, dividingScheduling: { type: 'Static' as const } } : spec,
  ),
);

export const subscriptionSchema = v.pipe(
  v.strictObject({ apiVersion: appsApiVersionField, kind: v.literal('Subscription'), metadata: meta, spec: subscriptionSpec, status: ignoredStatus }),
  v.transform(withoutStatus),
);
export type Subscription = v.InferOutput<typeof subscriptionSchema> & { status?: SubscriptionStatus };

/** What the hub reports (Clusternet's SubscriptionStatus, written by the deployer). */
export interface SubscriptionStatus {
  bindingClusters?: string[];
  replicas?: Record<string, number[]>;
  specHash?: number;
  desiredReleases?: number;
  completedReleases?: number;
  aggregatedStatuses?: unknown[];
  [field: string]: unknown;
}

// ---- Description ----

/** An object inside a Description: any apiVersion/kind with a name. */
const embeddedObject = v.looseObject({
  apiVersion: v.pipe(v.string(), v.nonEmpty('must not be empty')),
  kind: v.pipe(v.string(), v.nonEmpty('must not be empty')),
  metadata: v.looseObject({ name: v.pipe(v.string(), v.nonEmpty('must not be empty')), namespace: v.optional(v.string()) }),
});
export type EmbeddedObject = v.InferOutput<typeof embeddedObject>;

/**
 * Clusternet's Go type holds each raw object as []byte, which JSON spells in
 * base64; its examples (and users) write the object itself. Both are accepted
 * and stored as the object.
 */
const rawObject = v.union(
  [
    embeddedObject,
    v.pipe(
      v.string(),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        try {
          return v.parse(embeddedObject, JSON.parse(Buffer.from(dataset.value, 'base64').toString('utf8')));
        } catch {
          addIssue({ message: 'must be an object, or base64 of an object in JSON' });
          return NEVER;
        }
      }),
    ),
  ],
  'must be an object with apiVersion, kind and metadata.name (or base64 of one in JSON)',
);

export const descriptionSchema = v.pipe(
  v.strictObject({
    apiVersion: appsApiVersionField,
    kind: v.literal('Description'),
    metadata: meta,
    spec: v.strictObject({
      deployer: v.picklist(['Helm', 'Generic']),
      charts: v.optional(v.array(v.strictObject({ namespace: v.string(), name: v.string() }))),
      raw: v.optional(v.array(rawObject)),
      chartRaw: v.optional(v.array(rawObject)),
    }),
    status: ignoredStatus,
  }),
  v.transform(withoutStatus),
);
export type Description = v.InferOutput<typeof descriptionSchema>;

// ---- Localization, Globalization ----

export const localizationSchema = v.strictObject({
  apiVersion: appsApiVersionField,
  kind: v.literal('Localization'),
  metadata: meta,
  spec: v.strictObject({
    overridePolicy: v.optional(v.picklist(overridePolicies), 'ApplyLater'),
    overrides: v.optional(v.array(overrideConfig)),
    priority: overridePriority,
    feed: v.optional(feed),
  }),
});
export type Localization = v.InferOutput<typeof localizationSchema>;

export const globalizationSchema = v.strictObject({
  apiVersion: appsApiVersionField,
  kind: v.literal('Globalization'),
  metadata: meta,
  spec: v.strictObject({
    overridePolicy: v.optional(v.picklist(overridePolicies), 'ApplyLater'),
    clusterAffinity: v.optional(labelSelector),
    overrides: v.optional(v.array(overrideConfig)),
    priority: overridePriority,
    feed: v.optional(feed),
  }),
});
export type Globalization = v.InferOutput<typeof globalizationSchema>;

// ---- Base, Manifest (rendered by the hub) ----

export const baseSchema = v.strictObject({
  apiVersion: appsApiVersionField,
  kind: v.literal('Base'),
  metadata: meta,
  spec: v.strictObject({ feeds: v.pipe(v.array(feed), v.maxLength(maxFeeds, `must name at most ${maxFeeds} feeds`)) }),
});
export type Base = v.InferOutput<typeof baseSchema>;

export const manifestSchema = v.strictObject({
  apiVersion: appsApiVersionField,
  kind: v.literal('Manifest'),
  metadata: meta,
  template: embeddedObject,
});
export type Manifest = v.InferOutput<typeof manifestSchema>;

// ---- HelmChart (stored, and reported unsupported until Helm is built) ----

const helmRepo = /^(http|https|oci)?:\/\/(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*(),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+$/;

export const helmChartSchema = v.pipe(
  v.strictObject({
    apiVersion: v.picklist([appsApiVersion, clusternetAppsApiVersion]),
    kind: v.literal('HelmChart'),
    metadata: meta,
    spec: v.looseObject({
      repo: v.pipe(v.string(), v.regex(helmRepo, 'must be an http, https or oci URL')),
      chart: v.pipe(v.string(), v.nonEmpty('must not be empty')),
      version: v.optional(v.string()),
      targetNamespace: v.pipe(v.string(), v.nonEmpty('must not be empty')),
      createNamespace: v.optional(v.boolean(), true),
      timeoutSeconds: v.optional(nonNegativeInt32, 300),
    }),
    status: ignoredStatus,
  }),
  v.transform(withoutStatus),
);
export type HelmChart = v.InferOutput<typeof helmChartSchema>;
