import { ErrorCode, HawserError } from '../tunnel/index.js';
import { type KubeHttp, statusMessage } from './apply-http.js';

// The REST mapping (plural, namespaced or not) of each kind, from the API
// server's discovery, cached per group-version. A miss refetches that
// group-version, at most once per reconcile pass (beginPass), so a CRD applied
// earlier in the same pass is found and an unknown kind costs one request per
// pass, not one per object.

export interface RestMapping {
  group: string;
  version: string;
  kind: string;
  /** The resource name in URLs, e.g. "deployments". */
  plural: string;
  namespaced: boolean;
  verbs: readonly string[];
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
  verbs?: string[];
}

interface CacheEntry {
  /** undefined: the API server does not serve this group-version. */
  resources: RestMapping[] | undefined;
  pass: number;
}

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

export function groupVersionPath(group: string, version: string): string {
  return group === '' ? `/api/${encodeURIComponent(version)}` : `/apis/${encodeURIComponent(group)}/${encodeURIComponent(version)}`;
}

export class RestMapper {
  private readonly cache = new Map<string, CacheEntry>();
  private pass = 0;

  constructor(private readonly http: KubeHttp) {}

  /** A new reconcile pass: each group-version may be refetched once on a miss. */
  beginPass(): void {
    this.pass++;
  }

  /** Drops what is cached for a group-version (e.g. its CRD just became Established). */
  forget(group: string, version: string): void {
    this.cache.delete(`${group}/${version}`);
  }

  /** The mapping of apiVersion + kind, or undefined when the API server serves no such kind. */
  async resolve(apiVersion: string, kind: string): Promise<RestMapping | undefined> {
    const { group, version } = splitApiVersion(apiVersion);
    const key = `${group}/${version}`;
    let entry = this.cache.get(key);
    const find = (e: CacheEntry | undefined) => e?.resources?.find((r) => r.kind === kind);
    if (find(entry)) return find(entry);
    if (entry && entry.pass === this.pass) return undefined;
    entry = { resources: await this.fetch(group, version), pass: this.pass };
    this.cache.set(key, entry);
    return find(entry);
  }

  /**
   * Every top-level resource that can be listed and deleted, in each group's
   * preferred version (an object is listed once whatever versions serve it).
   */
  async listable(): Promise<RestMapping[]> {
    const groups: Array<{ group: string; version: string }> = [{ group: '', version: 'v1' }];
    const res = await this.http.request({ method: 'GET', path: '/apis' });
    if (res.status !== 200) throw new HawserError(ErrorCode.Unavailable, `GET /apis: ${statusMessage(res)}`);
    const list = JSON.parse(res.body) as { groups?: Array<{ name: string; preferredVersion?: { version: string } }> };
    for (const g of list.groups ?? []) if (g.preferredVersion) groups.push({ group: g.name, version: g.preferredVersion.version });
    const out: RestMapping[] = [];
    for (const { group, version } of groups) {
      const resources = await this.fetch(group, version);
      this.cache.set(`${group}/${version}`, { resources, pass: this.pass });
      for (const r of resources ?? []) if (r.verbs.includes('list') && r.verbs.includes('delete')) out.push(r);
    }
    return out;
  }

  private async fetch(group: string, version: string): Promise<RestMapping[] | undefined> {
    const path = groupVersionPath(group, version);
    const res = await this.http.request({ method: 'GET', path });
    // 404: the group-version is not served (a CRD not yet there); 503: an aggregated API that is down.
    if (res.status === 404 || res.status === 503) return undefined;
    if (res.status !== 200) throw new HawserError(ErrorCode.Unavailable, `discovery ${path}: ${statusMessage(res)}`);
    const list = JSON.parse(res.body) as { resources?: ApiResource[] };
    return (list.resources ?? [])
      .filter((r) => !r.name.includes('/'))
      .map((r) => ({ group, version, kind: r.kind, plural: r.name, namespaced: r.namespaced, verbs: r.verbs ?? [] }));
  }
}

/** "group/kind": the key of a type whatever its version. */
export function gkKey(gk: { group: string; kind: string }): string {
  return `${gk.group}/${gk.kind}`;
}

export function objectKey(group: string, kind: string, namespace: string | undefined, name: string): string {
  return `${group}/${kind}/${namespace ?? ''}/${name}`;
}

export function resourcePath(m: RestMapping, namespace: string | undefined, name?: string): string {
  let path = groupVersionPath(m.group, m.version);
  if (m.namespaced && namespace !== undefined) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${m.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  return path;
}

export function apiVersionOf(m: { group: string; version: string }): string {
  return m.group === '' ? m.version : `${m.group}/${m.version}`;
}
