import * as v from 'valibot';
import {
  baseSchema,
  descriptionSchema,
  globalizationSchema,
  helmChartSchema,
  localizationSchema,
  manifestSchema,
  maxFeeds,
  subscriptionSchema,
} from './apps.js';
import { appsApiVersion, canonicalApiVersion, groupOf, type KindInfo, lookupKind } from './kinds.js';
import { defaultMaxObjectBytes, type ObjectMeta } from './meta.js';
import { quoteBounded } from './quote.js';
import { formatIssues, objectMeta, pathSegmentName } from './schema.js';

// One applied document in, one validated object out (or a refusal with a
// code and a message naming the field and the value). The hub calls this for
// every document of an apply before it stores any of them.

/** Codes of the refusals; each is also in ErrorCode (src/tunnel/errors.ts), which the hub throws. */
export type ApiErrorCode =
  | 'HAWSER_INVALID_OBJECT'
  | 'HAWSER_UNKNOWN_KIND'
  | 'HAWSER_UNKNOWN_API_VERSION'
  | 'HAWSER_TOO_MANY_FEEDS'
  | 'HAWSER_OBJECT_TOO_LARGE'
  | 'HAWSER_READ_ONLY_KIND';

/** Where the hub keeps each kind; native objects (and HelmCharts) are feeds: templates, never run on the hub. */
export const appKinds = ['Subscription', 'Description', 'Localization', 'Globalization', 'Base', 'Manifest'] as const;
export type AppKind = (typeof appKinds)[number];
export type ResourceKind = AppKind | 'Feed';

/** Base and Manifest are rendered by the hub from Subscriptions; an apply of them is refused unless allowed. */
export const renderedKinds: ReadonlySet<string> = new Set(['Base', 'Manifest']);

/** Any Kubernetes-shaped object as the hub keeps it. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface ValidObject {
  resourceKind: ResourceKind;
  object: KubeObject;
  /** The metadata.resourceVersion the document carried: apply only over that version (optimistic concurrency). */
  expectResourceVersion?: string;
}

export type Validation = { ok: true; value: ValidObject } | { ok: false; code: ApiErrorCode; message: string };

/** Which object a document names: enough to find or delete it. */
export interface ObjectIdentity {
  resourceKind: ResourceKind;
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export type Identification = { ok: true; value: ObjectIdentity } | { ok: false; code: ApiErrorCode; message: string };

export interface ValidateOptions {
  /** The CLI's -n: the namespace of a namespaced kind that names none; one that names another is refused. Else "default". */
  defaultNamespace?: string;
  maxObjectBytes?: number;
  /** Accept Base and Manifest (the deployer's own writes). */
  allowRendered?: boolean;
}

const appSchemas: Record<AppKind | 'HelmChart', v.GenericSchema<unknown, unknown>> = {
  Subscription: subscriptionSchema,
  Description: descriptionSchema,
  Localization: localizationSchema,
  Globalization: globalizationSchema,
  Base: baseSchema,
  Manifest: manifestSchema,
  HelmChart: helmChartSchema,
};

/** Native objects, and kinds of groups the hub does not know: apiVersion, kind and a name; the rest is theirs. */
const fedObjectSchema = v.looseObject({
  apiVersion: v.string(),
  kind: v.string(),
  metadata: objectMeta(pathSegmentName),
});

/** Server-owned metadata: the hub sets these, whatever a document says. */
const serverOwnedMeta = ['uid', 'creationTimestamp', 'generation', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'resourceVersion'];

function refuse(code: ApiErrorCode, message: string): Validation {
  return { ok: false, code, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** "Subscription default/app-demo" for messages: what the document is, bounded. */
export function describeDocument(doc: unknown): string {
  if (!isRecord(doc)) return 'document';
  const kind = typeof doc.kind === 'string' ? doc.kind : 'object';
  const meta = isRecord(doc.metadata) ? doc.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : '';
  const ns = typeof meta.namespace === 'string' && meta.namespace ? `${meta.namespace}/` : '';
  return name ? `${quoteBounded(kind, 64).slice(1, -1)} ${quoteBounded(ns + name, 128).slice(1, -1)}` : quoteBounded(kind, 64).slice(1, -1);
}

/** Refusal of a reference (feed, embedded object) whose group has no such kind; undefined when fine. */
function refKindProblem(apiVersion: string, kind: string, field: string): Validation | undefined {
  const lookup = lookupKind(apiVersion, kind);
  if ('refused' in lookup) return refuse(lookup.refused === 'kind' ? 'HAWSER_UNKNOWN_KIND' : 'HAWSER_UNKNOWN_API_VERSION', `${field}: ${lookup.message}`);
  return undefined;
}

/** Every apiVersion/kind the object refers to, with the field that names it. */
function referencesOf(resourceKind: ResourceKind, object: Record<string, unknown>): Array<{ apiVersion: string; kind: string; field: string }> {
  const spec = (isRecord(object.spec) ? object.spec : {}) as Record<string, unknown>;
  const refs: Array<{ apiVersion: string; kind: string; field: string }> = [];
  const addList = (list: unknown, field: string) => {
    if (!Array.isArray(list)) return;
    list.forEach((item: Record<string, unknown>, i) => refs.push({ apiVersion: String(item.apiVersion), kind: String(item.kind), field: `${field}[${i}]` }));
  };
  switch (resourceKind) {
    case 'Subscription':
    case 'Base':
      addList(spec.feeds, 'spec.feeds');
      break;
    case 'Localization':
    case 'Globalization':
      if (isRecord(spec.feed)) refs.push({ apiVersion: String(spec.feed.apiVersion), kind: String(spec.feed.kind), field: 'spec.feed' });
      break;
    case 'Description':
      addList(spec.raw, 'spec.raw');
      addList(spec.chartRaw, 'spec.chartRaw');
      break;
    case 'Manifest':
      if (isRecord(object.template)) refs.push({ apiVersion: String(object.template.apiVersion), kind: String(object.template.kind), field: 'template' });
      break;
    case 'Feed':
      break;
  }
  return refs;
}

/** Namespace as a kube-apiserver would keep it: the default for namespaced kinds, none for cluster-scoped ones. */
function placeNamespace(meta: ObjectMeta, info: KindInfo | undefined, defaultNamespace: string): ObjectMeta {
  if (!info) return meta; // A kind the hub does not know: as written.
  if (info.namespaced) return meta.namespace ? meta : { ...meta, namespace: defaultNamespace };
  const { namespace: _namespace, ...rest } = meta;
  return rest;
}

/**
 * Validates one document as applied to the hub: its size, its kind (a known
 * group must have it), its schema (Clusternet's fields and defaults), and
 * every kind it refers to. Returns the object as the hub stores it.
 */
export function validateObject(doc: unknown, options: ValidateOptions = {}): Validation {
  const maxObjectBytes = options.maxObjectBytes ?? defaultMaxObjectBytes;
  if (!isRecord(doc)) return refuse('HAWSER_INVALID_OBJECT', `document: expected an object (a Kubernetes manifest), got ${Array.isArray(doc) ? 'a list' : quoteBounded(JSON.stringify(doc) ?? String(doc), 64)}`);
  const bytes = Buffer.byteLength(JSON.stringify(doc));
  if (bytes > maxObjectBytes) {
    return refuse('HAWSER_OBJECT_TOO_LARGE', `${describeDocument(doc)}: ${bytes} bytes exceed the hub's object limit of ${maxObjectBytes} bytes (--max-object-bytes)`);
  }
  for (const field of ['apiVersion', 'kind'] as const) {
    if (typeof doc[field] !== 'string' || doc[field] === '') {
      return refuse('HAWSER_INVALID_OBJECT', `${field}: ${doc[field] === undefined ? 'required' : `expected a non-empty string, got ${quoteBounded(JSON.stringify(doc[field]), 64)}`}`);
    }
  }
  const apiVersion = doc.apiVersion as string;
  const kind = doc.kind as string;
  const lookup = lookupKind(apiVersion, kind);
  if ('refused' in lookup) return refuse(lookup.refused === 'kind' ? 'HAWSER_UNKNOWN_KIND' : 'HAWSER_UNKNOWN_API_VERSION', lookup.message);
  const info = lookup.known ? lookup.info : undefined;

  const spec = isRecord(doc.spec) ? doc.spec : {};
  if (Array.isArray(spec.feeds) && spec.feeds.length > maxFeeds && (kind === 'Subscription' || kind === 'Base')) {
    return refuse('HAWSER_TOO_MANY_FEEDS', `${describeDocument(doc)}: spec.feeds names ${spec.feeds.length} feeds, more than the limit of ${maxFeeds}`);
  }

  const canonical = canonicalApiVersion(apiVersion);
  let resourceKind: ResourceKind = 'Feed';
  let schema: v.GenericSchema<unknown, unknown> = fedObjectSchema;
  if (canonical === appsApiVersion) {
    if (kind === 'HelmRelease' || kind === 'FeedInventory') {
      return refuse('HAWSER_READ_ONLY_KIND', `${kind} is written by the hub, not applied`);
    }
    if (renderedKinds.has(kind) && !options.allowRendered) {
      return refuse('HAWSER_READ_ONLY_KIND', `${kind} is rendered by the hub from Subscriptions, Localizations and Globalizations; apply those instead`);
    }
    schema = appSchemas[kind as AppKind | 'HelmChart'];
    if (kind !== 'HelmChart') resourceKind = kind as AppKind;
  } else if (groupOf(canonical) === 'clusters.hawser.io') {
    return refuse('HAWSER_READ_ONLY_KIND', `${kind} is written by the hub from agents' registrations; use hawser approve, deny or delete cluster`);
  }

  const parsed = v.safeParse(schema, doc, { abortEarly: false });
  if (!parsed.success) {
    return refuse('HAWSER_INVALID_OBJECT', `${describeDocument(doc)}: ${formatIssues(parsed.issues).join('; ')}`);
  }
  const object = parsed.output as KubeObject;
  for (const ref of referencesOf(resourceKind, object)) {
    const problem = refKindProblem(ref.apiVersion, ref.kind, ref.field);
    if (problem && !problem.ok) return { ...problem, message: `${describeDocument(doc)}: ${problem.message}` };
  }

  // As kubectl: a namespace asked for (-n) and another in the document is a mistake, not a choice.
  const written = object.metadata.namespace;
  if (options.defaultNamespace && written && written !== options.defaultNamespace && info?.namespaced !== false) {
    return refuse(
      'HAWSER_INVALID_OBJECT',
      `${describeDocument(doc)}: metadata.namespace ${quoteBounded(written)} does not match the namespace asked for (${quoteBounded(options.defaultNamespace)})`,
    );
  }
  const expectResourceVersion = object.metadata.resourceVersion || undefined;
  const metadata: Record<string, unknown> = { ...placeNamespace(object.metadata, info, options.defaultNamespace ?? 'default') };
  for (const field of serverOwnedMeta) delete metadata[field];
  return {
    ok: true,
    value: { resourceKind, object: { ...object, metadata: metadata as unknown as ObjectMeta }, ...(expectResourceVersion ? { expectResourceVersion } : {}) },
  };
}

/**
 * The object a document names, without validating the rest of it (as
 * `kubectl delete -f` reads a file): apiVersion, kind, name, and the
 * namespace placed as an apply would place it.
 */
export function identifyObject(doc: unknown, options: Pick<ValidateOptions, 'defaultNamespace'> = {}): Identification {
  if (!isRecord(doc)) return refuse('HAWSER_INVALID_OBJECT', 'document: expected an object (a Kubernetes manifest)') as Identification;
  const meta = isRecord(doc.metadata) ? doc.metadata : {};
  for (const [field, value] of [['apiVersion', doc.apiVersion], ['kind', doc.kind], ['metadata.name', meta.name]] as const) {
    if (typeof value !== 'string' || value === '') return refuse('HAWSER_INVALID_OBJECT', `${field}: required`) as Identification;
  }
  const apiVersion = canonicalApiVersion(doc.apiVersion as string);
  const kind = doc.kind as string;
  const lookup = lookupKind(apiVersion, kind);
  if ('refused' in lookup) return refuse(lookup.refused === 'kind' ? 'HAWSER_UNKNOWN_KIND' : 'HAWSER_UNKNOWN_API_VERSION', lookup.message) as Identification;
  const isApp = apiVersion === appsApiVersion && (appKinds as readonly string[]).includes(kind);
  const placed = placeNamespace(
    { name: meta.name as string, ...(typeof meta.namespace === 'string' && meta.namespace ? { namespace: meta.namespace } : {}) },
    lookup.known ? lookup.info : undefined,
    options.defaultNamespace ?? 'default',
  );
  return {
    ok: true,
    value: {
      resourceKind: isApp ? (kind as AppKind) : 'Feed',
      // Feeds are kept under the apiVersion they were written with; hawser's kinds under hawser's group.
      apiVersion: isApp ? apiVersion : (doc.apiVersion as string),
      kind,
      name: placed.name,
      ...(placed.namespace ? { namespace: placed.namespace } : {}),
    },
  };
}
