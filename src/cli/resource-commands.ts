import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  appsApiVersion,
  canonicalApiVersion,
  type Description,
  dns1123LabelProblem,
  type Globalization,
  groupOf,
  type KubeObject,
  type Localization,
  parseDocuments,
  type ResourceName,
  type SourcedDocument,
  type Subscription,
} from '../api/index.js';
import { formatDuration } from '../tunnel/index.js';
import { HubRequestError, hubRequest } from './client.js';
import type { HubTarget } from './config.js';
import { UsageError } from './flags.js';
import { renderObject, renderObjects, renderTable } from './table.js';

// apply -f, get and delete of Subscriptions and their kin, and of the native
// objects they feed. Files are parsed here, so a YAML error names its file and
// nothing is sent; the hub validates every object and stores all or none.

const manifestExtensions = ['.yaml', '.yml', '.json'];

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** The files -f names: a file, every manifest in a directory (sorted), or "-" for stdin. */
async function manifestTexts(paths: readonly string[]): Promise<Array<{ name: string; text: string }>> {
  const texts: Array<{ name: string; text: string }> = [];
  for (const path of paths) {
    if (path === '-') {
      texts.push({ name: 'stdin', text: await readStdin() });
      continue;
    }
    const info = await stat(path);
    if (info.isDirectory()) {
      const names = (await readdir(path)).filter((n) => manifestExtensions.some((e) => n.endsWith(e))).sort();
      if (names.length === 0) throw new UsageError(`${path}: no .yaml, .yml or .json files in this directory`);
      for (const n of names) texts.push({ name: join(path, n), text: await readFile(join(path, n), 'utf8') });
    } else {
      texts.push({ name: path, text: await readFile(path, 'utf8') });
    }
  }
  return texts;
}

/** Every document of the files; invalid YAML anywhere refuses them all (HAWSER_INVALID_YAML), naming file and line. */
export async function readManifests(paths: readonly string[]): Promise<SourcedDocument[]> {
  const documents: SourcedDocument[] = [];
  for (const { name, text } of await manifestTexts(paths)) {
    const parsed = parseDocuments(text, name);
    if (!parsed.ok) throw new HubRequestError(parsed.code, `${parsed.message}; nothing was sent to the hub`);
    documents.push(...parsed.documents);
  }
  if (documents.length === 0) throw new UsageError(`no objects in ${paths.join(', ')}`);
  return documents;
}

export function namespaceFlagValue(ns: string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  const problem = dns1123LabelProblem(ns);
  if (problem) throw new UsageError(`-n ${JSON.stringify(ns)}: ${problem}`);
  return ns;
}

function requestBody(documents: readonly SourcedDocument[]) {
  return {
    contentType: 'application/json',
    text: JSON.stringify({ kind: 'ApplyRequest', items: documents.map((d) => ({ source: d.source, object: d.doc })) }),
  };
}

interface ResultItem {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** kubectl's way of naming an object in a result line: "deployment.apps/my-nginx", "subscription.apps.hawser.io/app-demo". */
export function objectRef(item: ResultItem): string {
  const group = groupOf(canonicalApiVersion(item.apiVersion));
  return `${item.kind.toLowerCase()}${group ? `.${group}` : ''}/${item.name}`;
}

export async function applyManifests(target: HubTarget, paths: readonly string[], namespace: string | undefined, output: 'json' | 'yaml' | undefined): Promise<number> {
  const documents = await readManifests(paths);
  const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : '';
  const result = await hubRequest<{ items: Array<ResultItem & { action: string }> }>(target, 'POST', `/api/v1/apply${query}`, requestBody(documents));
  if (output) console.log(renderObject(result, output));
  else for (const item of result.items) console.log(`${objectRef(item)} ${item.action}`);
  return 0;
}

export async function deleteManifests(target: HubTarget, paths: readonly string[], namespace: string | undefined): Promise<number> {
  const documents = await readManifests(paths);
  const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : '';
  const result = await hubRequest<{ items: Array<ResultItem & { deleted: boolean }> }>(target, 'POST', `/api/v1/delete${query}`, requestBody(documents));
  let missing = 0;
  for (const item of result.items) {
    if (item.deleted) console.log(`${objectRef(item)} deleted`);
    else {
      missing++;
      console.error(`hawser: HAWSER_NOT_FOUND: ${objectRef(item)}${item.namespace ? ` in namespace ${item.namespace}` : ''} not found`);
    }
  }
  return missing > 0 ? 1 : 0;
}

export async function deleteResource(target: HubTarget, resource: ResourceName, name: string, namespace: string | undefined): Promise<number> {
  const ns = resource.namespaced ? (namespace ?? 'default') : undefined;
  await hubRequest(target, 'DELETE', `/api/v1/resources/${resource.plural}/${encodeURIComponent(name)}${ns ? `?namespace=${encodeURIComponent(ns)}` : ''}`);
  console.log(`${objectRef({ apiVersion: appsApiVersion, kind: resource.kind, name })} deleted`);
  return 0;
}

function age(object: KubeObject, nowMs: number): string {
  const created = object.metadata.creationTimestamp;
  return created ? formatDuration(Math.max(0, nowMs - Date.parse(created))) : '<unknown>';
}

function feedText(feed: { kind: string; namespace?: string; name: string } | undefined): string {
  return feed ? `${feed.kind}/${feed.namespace ? `${feed.namespace}/` : ''}${feed.name}` : '<none>';
}

/** Columns per kind, after Clusternet's printcolumns. */
function columns(resource: ResourceName): { header: string[]; row(o: KubeObject): string[] } {
  switch (resource.kind) {
    case 'Subscription':
      return {
        header: ['STRATEGY', 'FEEDS', 'CLUSTERS', 'SCHEDULED', 'APPLIED', 'HEALTHY'],
        row: (o) => {
          const s = o as unknown as Subscription;
          const strategy = s.spec.schedulingStrategy === 'Dividing' ? `Dividing/${s.spec.dividingScheduling?.type ?? 'Static'}` : s.spec.schedulingStrategy;
          // The deployer's conditions: True, or the status with its reason.
          const conditions = (s.status as { conditions?: Array<{ type: string; status: string; reason?: string }> } | undefined)?.conditions ?? [];
          const text = (type: string) => {
            const c = conditions.find((x) => x.type === type);
            return !c ? '<pending>' : c.status === 'True' ? 'True' : `${c.status} (${c.reason ?? 'unknown'})`;
          };
          return [strategy, String(s.spec.feeds.length), String(s.status?.bindingClusters?.length ?? 0), text('Scheduled'), text('Applied'), text('Healthy')];
        },
      };
    case 'Description':
      return {
        header: ['DEPLOYER', 'STATUS'],
        row: (o) => {
          const d = o as unknown as Description & { status?: { phase?: string } };
          return [d.spec.deployer, d.status?.phase ?? '<none>'];
        },
      };
    case 'Localization':
    case 'Globalization':
      return {
        header: ['PRIORITY', 'POLICY', 'FEED', 'OVERRIDES'],
        row: (o) => {
          const l = o as unknown as Localization | Globalization;
          return [String(l.spec.priority), l.spec.overridePolicy, feedText(l.spec.feed), String(l.spec.overrides?.length ?? 0)];
        },
      };
    case 'Base':
      return { header: ['FEEDS'], row: (o) => [String(((o.spec as { feeds?: unknown[] })?.feeds ?? []).length)] };
    case 'Manifest':
      return {
        header: ['TEMPLATE'],
        row: (o) => {
          const t = o.template as KubeObject | undefined;
          return [t ? feedText({ kind: t.kind, namespace: t.metadata.namespace, name: t.metadata.name }) : '<none>'];
        },
      };
  }
}

export function resourceTable(resource: ResourceName, items: KubeObject[], nowMs: number, withNamespace: boolean): string {
  const cols = columns(resource);
  const sorted = items.slice().sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
  const header = [...(withNamespace ? ['NAMESPACE'] : []), 'NAME', ...cols.header, 'AGE'];
  const rows = sorted.map((o) => [...(withNamespace ? [o.metadata.namespace ?? ''] : []), o.metadata.name, ...cols.row(o), age(o, nowMs)]);
  return renderTable(header, rows);
}

export interface GetOptions {
  name?: string;
  namespace?: string;
  allNamespaces: boolean;
  output?: 'json' | 'yaml';
}

export async function getResources(target: HubTarget, resource: ResourceName, o: GetOptions): Promise<number> {
  const ns = resource.namespaced && !o.allNamespaces ? (o.namespace ?? 'default') : undefined;
  const query = ns ? `?namespace=${encodeURIComponent(ns)}` : '';
  if (o.name) {
    const object = await hubRequest<KubeObject>(target, 'GET', `/api/v1/resources/${resource.plural}/${encodeURIComponent(o.name)}${query}`);
    console.log(o.output ? renderObject(object, o.output) : resourceTable(resource, [object], Date.now(), false));
    return 0;
  }
  const list = await hubRequest<{ items: KubeObject[] }>(target, 'GET', `/api/v1/resources/${resource.plural}${query}`);
  if (o.output) console.log(renderObjects(list.items, o.output));
  else if (list.items.length === 0) console.log(`No ${resource.plural} found${ns ? ` in namespace ${ns}` : ''}.`);
  else console.log(resourceTable(resource, list.items, Date.now(), resource.namespaced && o.allNamespaces));
  return 0;
}

/** The native objects Subscriptions feed (templates on the hub): every namespace unless -n. */
export async function getFeeds(target: HubTarget, o: { namespace?: string; output?: 'json' | 'yaml' }): Promise<number> {
  const query = o.namespace ? `?namespace=${encodeURIComponent(o.namespace)}` : '';
  const list = await hubRequest<{ items: KubeObject[] }>(target, 'GET', `/api/v1/feeds${query}`);
  if (o.output) {
    console.log(renderObjects(list.items, o.output));
    return 0;
  }
  if (list.items.length === 0) {
    console.log(`No feeds found${o.namespace ? ` in namespace ${o.namespace}` : ''}.`);
    return 0;
  }
  const nowMs = Date.now();
  const rows = list.items
    .map((f) => [f.metadata.namespace ?? '', f.metadata.name, f.apiVersion, f.kind, age(f, nowMs)])
    .sort((a, b) => a.slice(0, 4).join('/').localeCompare(b.slice(0, 4).join('/')));
  console.log(renderTable(['NAMESPACE', 'NAME', 'APIVERSION', 'KIND', 'AGE'], rows));
  return 0;
}
