import { quoteBounded } from '../../api/index.js';
import { ErrorCode, HawserError } from '../../tunnel/index.js';
import { type FeedKey, type KeyOf, type KubeObject, type ObjectKey, type ResourceVersion, type StoredKeyOf, type StoredKind, storedKinds } from './types.js';

// Keys as the store spells them: each part percent-encoded (so '/' never
// occurs inside a part) and joined by '/'. The namespace comes first ('' when
// cluster-scoped), so one namespace is one key prefix. Feeds: namespace,
// apiVersion, kind, name.

function part(value: string, field: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    throw new HawserError(ErrorCode.InvalidStoreKey, `${field} ${quoteBounded(value)} is not valid text (lone surrogate)`);
  }
}

function required(value: unknown, field: string, kind: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new HawserError(ErrorCode.InvalidStoreKey, `${kind} key: ${field} must be a non-empty string (is ${quoteBounded(String(value))})`);
  }
  return value;
}

const known = new Set<string>(storedKinds);

/** Kinds are part of the store's keys: only the kinds of StoredKinds. */
export function checkKind(kind: string): void {
  if (!known.has(kind)) {
    throw new HawserError(ErrorCode.InvalidStoreKey, `store kind ${quoteBounded(String(kind))} is not a kind the store holds`);
  }
}

/** The key with a bare name expanded and the namespace omitted when cluster-scoped. */
export function normalizeKey<K extends StoredKind>(kind: K, key: KeyOf<K>): StoredKeyOf<K> {
  checkKind(kind);
  const k: ObjectKey & Partial<FeedKey> = typeof key === 'string' ? { name: key } : key;
  const name = required(k.name, 'name', kind);
  if (k.namespace !== undefined && typeof k.namespace !== 'string') required(k.namespace, 'namespace', kind);
  const namespace = k.namespace ? { namespace: k.namespace } : {};
  if (kind === 'Feed') {
    const apiVersion = required(k.apiVersion, 'apiVersion', kind);
    const objectKind = required(k.kind, 'kind', kind);
    return { apiVersion, kind: objectKind, ...namespace, name } as StoredKeyOf<K>;
  }
  return { ...namespace, name } as StoredKeyOf<K>;
}

/** The key's text within its kind: unambiguous, namespace first. */
export function encodeKey<K extends StoredKind>(kind: K, key: KeyOf<K>): string {
  const k = normalizeKey(kind, key) as ObjectKey & Partial<FeedKey>;
  const ns = part(k.namespace ?? '', 'namespace');
  const name = part(k.name, 'name');
  if (kind === 'Feed') return `${ns}/${part(k.apiVersion!, 'apiVersion')}/${part(k.kind!, 'kind')}/${name}`;
  return `${ns}/${name}`;
}

export function decodeKey<K extends StoredKind>(kind: K, text: string): StoredKeyOf<K> {
  const parts = text.split('/').map((p) => decodeURIComponent(p));
  const [ns, ...rest] = parts;
  const namespace = ns ? { namespace: ns } : {};
  if (kind === 'Feed') {
    const [apiVersion, objectKind, name] = rest;
    return { apiVersion, kind: objectKind, ...namespace, name } as StoredKeyOf<K>;
  }
  return { ...namespace, name: rest[0] } as StoredKeyOf<K>;
}

/** The key prefix of one namespace ('' = cluster-scoped objects). */
export function namespacePrefix(namespace: string): string {
  return `${part(namespace, 'namespace')}/`;
}

/** The key of a Kubernetes-shaped object, from its metadata (and apiVersion/kind for feeds). */
export function keyOfObject<K extends StoredKind>(kind: K, object: KubeObject): StoredKeyOf<K> {
  const { name, namespace } = object.metadata;
  if (kind === 'Feed') return normalizeKey(kind, { apiVersion: object.apiVersion, kind: object.kind, namespace, name } as KeyOf<K>);
  return normalizeKey(kind, { namespace, name } as KeyOf<K>);
}

const decimal = /^(0|[1-9][0-9]{0,15})$/;

/** Parses a resourceVersion; anything but a decimal integer is HAWSER_INVALID_RESOURCE_VERSION. */
export function parseResourceVersion(rv: ResourceVersion, field = 'resourceVersion'): number {
  if (typeof rv !== 'string' || !decimal.test(rv) || !Number.isSafeInteger(Number(rv))) {
    throw new HawserError(ErrorCode.InvalidResourceVersion, `${field} ${quoteBounded(String(rv))} is not a decimal resourceVersion`);
  }
  return Number(rv);
}

/** Negative, zero or positive as a is older than, equal to or newer than b. */
export function compareResourceVersions(a: ResourceVersion, b: ResourceVersion): number {
  return parseResourceVersion(a) - parseResourceVersion(b);
}
