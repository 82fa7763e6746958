import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  dns1123LabelProblem,
  identifyObject,
  type ObjectIdentity,
  parseDocuments,
  quoteBounded,
  resolveResourceName,
  type ResourceKind,
  type ResourceName,
  resourceNames,
  type SourcedDocument,
} from '../api/index.js';
import { ErrorCode, HawserError, toHawserError } from '../tunnel/index.js';
import type { ResourceEvent, ResourceKey, ResourceService } from './resources.js';

// The HTTP face of ResourceService: apply and delete take multi-document
// YAML or JSON; get, list and delete take a resource name as `hawser get`
// does; a list with ?watch=true streams changes as JSON lines.

/** An apply or delete request body, at most: a directory of manifests, not a backup. */
export const defaultMaxRequestBytes = 16 * 1024 * 1024;

/** A reply whose body is written as it comes (watch): the route table hands it the response. */
export class StreamBody {
  constructor(readonly write: (res: ServerResponse, signal: AbortSignal) => Promise<void>) {}
}

export interface ResourceRouteContext {
  params: string[];
  query: URLSearchParams;
  req: IncomingMessage;
  auditDetails: Record<string, unknown>;
}

export interface ResourceRoute {
  method: 'GET' | 'POST' | 'DELETE';
  path: RegExp;
  access: 'viewer' | 'admin';
  audit?: string;
  handle(ctx: ResourceRouteContext): Promise<[number, unknown]>;
}

/** Reads a request body up to `maxBytes`; past that it is read and dropped, so the client gets the refusal, not a reset. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.on('end', () => (size > maxBytes ? reject(tooLarge(size, maxBytes)) : resolve(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function tooLarge(bytes: number, maxBytes: number): HawserError {
  return new HawserError(ErrorCode.RequestTooLarge, `request body of ${bytes} bytes exceeds the hub's limit of ${maxBytes} bytes; apply fewer files at once`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The documents of an apply or delete body. JSON: hawser's
 * `{kind: "ApplyRequest", items: [{source, object}]}` (what the CLI sends, so
 * errors name files), a v1 List, or one object. Anything else is YAML.
 */
export function documentsOfBody(text: string, contentType: string | undefined): SourcedDocument[] {
  if (contentType?.split(';')[0]?.trim() === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new HawserError(ErrorCode.InvalidYaml, `request body is not valid JSON: ${(err as Error).message}`);
    }
    if (isRecord(body) && body.kind === 'ApplyRequest' && Array.isArray(body.items)) {
      return body.items.map((item: unknown, i) => {
        const entry = isRecord(item) ? item : {};
        return { source: typeof entry.source === 'string' ? entry.source.slice(0, 300) : `item ${i + 1}`, doc: entry.object };
      });
    }
    if (isRecord(body) && body.kind === 'List' && Array.isArray(body.items)) return body.items.map((doc: unknown, i) => ({ source: `item ${i + 1}`, doc }));
    return [{ source: 'document 1', doc: body }];
  }
  const parsed = parseDocuments(text);
  if (!parsed.ok) throw new HawserError(parsed.code, parsed.message);
  return parsed.documents;
}

function namespaceParam(query: URLSearchParams): string | undefined {
  const ns = query.get('namespace');
  if (ns === null || ns === '') return undefined;
  const problem = dns1123LabelProblem(ns);
  if (problem) throw new HawserError(ErrorCode.InvalidOption, `namespace ${quoteBounded(ns)} ${problem}`);
  return ns;
}

function resourceParam(typed: string): ResourceName {
  const resource = resolveResourceName(typed);
  if (!resource) {
    throw new HawserError(ErrorCode.NotFound, `no resource ${quoteBounded(typed, 64)}; the hub serves ${resourceNames.map((r) => r.plural).join(', ')}`);
  }
  return resource;
}

function keyFor(resource: ResourceName, name: string, query: URLSearchParams): ResourceKey {
  return resource.namespaced ? { namespace: namespaceParam(query) ?? 'default', name } : { name };
}

export function resourceRoutes(resources: ResourceService, maxRequestBytes = defaultMaxRequestBytes): ResourceRoute[] {
  return [
    {
      method: 'POST',
      path: /^\/api\/v1\/apply$/,
      access: 'admin',
      audit: 'apply',
      handle: async ({ req, query, auditDetails }) => {
        const documents = documentsOfBody(await readBody(req, maxRequestBytes), req.headers['content-type']);
        const items = await resources.apply(documents, namespaceParam(query));
        auditDetails.objects = items.length;
        auditDetails.changed = items.filter((i) => i.action !== 'unchanged').map((i) => `${i.kind} ${i.namespace ? `${i.namespace}/` : ''}${i.name}`).slice(0, 50);
        return [200, { kind: 'ApplyResult', items }];
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/delete$/,
      access: 'admin',
      audit: 'delete-objects',
      handle: async ({ req, query, auditDetails }) => {
        const documents = documentsOfBody(await readBody(req, maxRequestBytes), req.headers['content-type']);
        const items = await resources.delete(documents, namespaceParam(query));
        auditDetails.deleted = items.filter((i) => i.deleted).map((i) => `${i.kind} ${i.namespace ? `${i.namespace}/` : ''}${i.name}`).slice(0, 50);
        return [200, { kind: 'DeleteResult', items }];
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/resources\/([^/]+)$/,
      access: 'viewer',
      handle: async ({ params: [typed], query }) => {
        const resource = resourceParam(typed!);
        const namespace = resource.namespaced ? namespaceParam(query) : undefined;
        if (query.get('watch') === 'true' || query.get('watch') === '1') {
          const resourceVersion = query.get('resourceVersion') ?? undefined;
          return [200, watchStream(resources, resource.kind, namespace, resourceVersion)];
        }
        const listed = await resources.list(resource.kind, namespace);
        return [200, { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: listed.resourceVersion }, items: listed.items }];
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/resources\/([^/]+)\/([^/]+)$/,
      access: 'viewer',
      handle: async ({ params: [typed, name], query }) => {
        const resource = resourceParam(typed!);
        return [200, await resources.get(resource.kind, keyFor(resource, name!, query))];
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/resources\/([^/]+)\/([^/]+)$/,
      access: 'admin',
      audit: 'delete-object',
      handle: async ({ params: [typed, name], query, auditDetails }) => {
        const resource = resourceParam(typed!);
        const key = keyFor(resource, name!, query);
        auditDetails.kind = resource.kind;
        if (key.namespace) auditDetails.namespace = key.namespace;
        await resources.deleteOne(resource.kind, key);
        return [200, { kind: 'Status', status: 'Success', details: { kind: resource.kind, ...key } }];
      },
    },
    ...feedRoutes(resources),
  ];
}

/** A feed's key from the query (apiVersion, kind, namespace) and the path's name, placed as an apply places it. */
function feedKey(name: string, query: URLSearchParams): { kind: ResourceKind; key: ResourceKey } {
  const id = identified(name, query);
  return { kind: id.resourceKind, key: { ...(id.resourceKind === 'Feed' ? { apiVersion: id.apiVersion, kind: id.kind } : {}), ...(id.namespace ? { namespace: id.namespace } : {}), name: id.name } };
}

function identified(name: string, query: URLSearchParams): ObjectIdentity {
  const apiVersion = query.get('apiVersion') ?? '';
  const kind = query.get('kind') ?? '';
  if (!apiVersion || !kind) throw new HawserError(ErrorCode.InvalidOption, 'a feed is named by ?apiVersion=…&kind=… (and &namespace=… when namespaced) with its name in the path');
  const ns = namespaceParam(query);
  const id = identifyObject({ apiVersion, kind, metadata: { name, ...(ns ? { namespace: ns } : {}) } });
  if (!id.ok) throw new HawserError(id.code, id.message);
  return id.value;
}

/** The native objects Subscriptions feed by name: templates on the hub, listed, read, deleted and watched. */
function feedRoutes(resources: ResourceService): ResourceRoute[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/feeds$/,
      access: 'viewer',
      handle: async ({ query }) => {
        const namespace = namespaceParam(query);
        const apiVersion = query.get('apiVersion');
        const kind = query.get('kind');
        const wanted = (o: { apiVersion: string; kind: string }) => (!apiVersion || o.apiVersion === apiVersion) && (!kind || o.kind === kind);
        if (query.get('watch') === 'true' || query.get('watch') === '1') {
          const resourceVersion = query.get('resourceVersion') ?? undefined;
          return [200, watchStream(resources, 'Feed', namespace, resourceVersion, (e) => wanted(e.object))];
        }
        const listed = await resources.list('Feed', namespace);
        return [200, { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: listed.resourceVersion }, items: listed.items.filter(wanted) }];
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/feeds\/([^/]+)$/,
      access: 'viewer',
      handle: async ({ params: [name], query }) => {
        const { kind, key } = feedKey(name!, query);
        return [200, await resources.get(kind, key)];
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/feeds\/([^/]+)$/,
      access: 'admin',
      audit: 'delete-object',
      handle: async ({ params: [name], query, auditDetails }) => {
        const { kind, key } = feedKey(name!, query);
        Object.assign(auditDetails, { kind: key.kind ?? kind, apiVersion: key.apiVersion, ...(key.namespace ? { namespace: key.namespace } : {}) });
        await resources.deleteOne(kind, key);
        return [200, { kind: 'Status', status: 'Success', details: { kind: key.kind ?? kind, ...key } }];
      },
    },
  ];
}

/** JSON lines: {"type":"ADDED"|"MODIFIED"|"DELETED","object":…}; a failure ends the stream with {"type":"ERROR","object":{code,message}}. */
function watchStream(
  resources: ResourceService,
  kind: ResourceKind,
  namespace: string | undefined,
  resourceVersion: string | undefined,
  wanted: (event: ResourceEvent) => boolean = () => true,
): StreamBody {
  return new StreamBody(async (res, signal) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Headers now, not with the first event: a client waits for them before it changes anything.
    res.flushHeaders();
    const writeLine = async (line: unknown) => {
      if (!res.write(`${JSON.stringify(line)}\n`)) await new Promise<void>((resolve) => res.once('drain', resolve).once('close', resolve));
    };
    try {
      const events = resources.watch(kind, { ...(resourceVersion ? { resourceVersion } : {}), ...(namespace ? { namespace } : {}), signal });
      for await (const event of events) {
        if (signal.aborted) break;
        if (!wanted(event)) continue;
        await writeLine({ type: event.type, object: event.object });
      }
    } catch (err) {
      if (!signal.aborted) {
        const error = toHawserError(err);
        await writeLine({ type: 'ERROR', object: error.toJSON() });
      }
    }
    res.end();
  });
}
