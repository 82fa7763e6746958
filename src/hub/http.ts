import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { Logger } from 'pino';
import { boundedText, defaultQuoteChars, type ManagedCluster, quoteBounded } from '../api/index.js';
import { ErrorCode, HawserError, toHawserError } from '../tunnel/index.js';
import { type Operator, type OperatorAuthenticator, type OperatorRole, proxyScopeError, roleAllows } from './auth.js';
import type { HubMetrics } from './metrics.js';
import type { HubPki, PkiState } from './pki.js';
import { authorizeProxy, type HubProxy, proxyErrorBody } from './proxy.js';
import { parseProxyPath, type ProxyRoute } from './proxy-paths.js';
import type { Registrar } from './registration.js';
import { defaultMaxRequestBytes, readBody, resourceRoutes, StreamBody } from './resources-http.js';
import type { ResourceService } from './resources.js';
import type { HubStore } from './store.js';
import { confirmPrune, parseConfirmPrune, readSyncStatus, type SyncSessions } from './sync/index.js';

// The operators' HTTP API: read clusters and registration requests, approve
// requests, scrape metrics, and apply, read, delete and watch Subscriptions and
// the objects they feed (resources-http.ts). Every route says who may call it and whether the
// call is audited; a bearer token (auth.ts) names the operator. Plain HTTP on
// loopback, TLS anywhere else (server.ts decides).

const statusForCode: Partial<Record<string, number>> = {
  [ErrorCode.NotFound]: 404,
  [ErrorCode.InvalidOption]: 400,
  [ErrorCode.RegistrationDenied]: 409,
  [ErrorCode.AlreadyRegistered]: 409,
  [ErrorCode.MalformedPath]: 400,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.ClusterOutOfScope]: 403,
  [ErrorCode.RotationIncomplete]: 409,
  [ErrorCode.PkiUnmanaged]: 409,
  [ErrorCode.InvalidYaml]: 400,
  [ErrorCode.InvalidObject]: 422,
  [ErrorCode.UnknownKind]: 422,
  [ErrorCode.UnknownApiVersion]: 422,
  [ErrorCode.TooManyFeeds]: 422,
  [ErrorCode.ReadOnlyKind]: 422,
  [ErrorCode.UnknownClusterNamespace]: 422,
  [ErrorCode.ObjectTooLarge]: 413,
  [ErrorCode.TooManyDocuments]: 413,
  [ErrorCode.RequestTooLarge]: 413,
  // The store's compare-and-swap refusal (src/hub/store): someone else wrote first.
  [ErrorCode.StoreConflict]: 409,
  [ErrorCode.PruneConfirmStale]: 409,
  [ErrorCode.ClusterOffline]: 503,
};

/** Decodes one path segment; bad percent-encoding is the client's mistake (400), not ours. */
function pathSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HawserError(ErrorCode.MalformedPath, `path segment ${quoteBounded(raw)} is not valid percent-encoding`);
  }
}

export interface HubApiDeps {
  store: HubStore;
  registrar: Registrar;
  metrics: HubMetrics;
  logger: Logger;
  authenticator: OperatorAuthenticator;
  /** /metrics without a token. */
  metricsAnonymous: boolean;
  /** Serve HTTPS with this certificate. */
  tls?: { certPem: string; keyPem: string };
  /** The hub's CAs and serving certificate: shown to viewers, rotated by admins. */
  pki?: HubPki;
  /** Per cluster, the trust bundle version the hub sent it (HubCore.trustBundleSent). */
  trustBundleSent?: () => ReadonlyMap<string, number>;
  /** Subscriptions and kin, and the objects they feed: apply, get, list, delete, watch. */
  resources?: ResourceService;
  /** Largest apply or delete request body. */
  maxRequestBytes?: number;
  /** A cluster as readers see it: with state the hub holds in memory (HubCore.clusterView). */
  clusterView?: (c: ManagedCluster) => ManagedCluster;
  /** Live sync sessions: confirm-prune reaches an agent through them. */
  syncSessions?: SyncSessions;
  /** kubectl through the hub: /clusters/NAME/... and Clusternet's sockets proxy paths. */
  proxy?: HubProxy;
}

/**
 * A cluster as the API shows it: with status.sync, what its agent last
 * reported of sync (the mode it runs, a held prune and the command that
 * releases it), from its ClusterSyncStatus.
 */
async function withSyncStatus(store: HubStore, cluster: ManagedCluster): Promise<unknown> {
  const namespace = cluster.metadata.namespace;
  if (!namespace) return cluster;
  const sync = await readSyncStatus(store, namespace, cluster.metadata.name);
  if (!sync) return cluster;
  const shown = {
    ...(sync.syncMode ? { syncMode: sync.syncMode } : {}),
    ...(sync.revision !== undefined ? { revision: sync.revision } : {}),
    ...(sync.appliedAt ? { appliedAt: sync.appliedAt } : {}),
    ...(sync.pruneHeld ? { pruneHeld: sync.pruneHeld } : {}),
    ...(sync.offlineCache ? { offlineCache: sync.offlineCache } : {}),
  };
  return { ...cluster, status: { ...cluster.status, sync: shown } };
}

export type HubApiServer = Server | TlsServer;

/** 'public': no token; otherwise the least role that may call the route. */
export type RouteAccess = 'public' | OperatorRole;

export interface RouteContext {
  /** The path's captured groups, percent-decoded. */
  params: string[];
  /** The URL's query parameters. */
  query: URLSearchParams;
  req: IncomingMessage;
  /** The caller; undefined only on public routes. */
  user: Operator | undefined;
  /** What an audited handler adds to its audit line (user, action, target and outcome are set for it). */
  auditDetails: Record<string, unknown>;
}

type Reply = [status: number, body: unknown, contentType?: string];

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  path: RegExp;
  access: RouteAccess;
  /** Audit action: one log line per call naming user, action, target (params[0]) and outcome. */
  audit?: string;
  handle(ctx: RouteContext): Promise<Reply>;
}

function send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json', headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A target name as is when short; quoted and cut when long (it comes from the URL). */
function boundedTarget(name: string): string {
  return name.length <= defaultQuoteChars ? name : quoteBounded(name);
}

/** The user a request acts as: who it names, or the refusal. */
function actor(ctx: RouteContext): string {
  return ctx.user?.name ?? 'anonymous';
}

/** Whether a scoped operator (names or selector) sees this cluster: never one outside its scope. */
function inScope(user: Operator | undefined, cluster: ManagedCluster): boolean {
  return !user?.clusters || proxyScopeError(user, cluster.metadata.name, cluster) === undefined;
}

/** The cluster a route names, for this operator: 403 outside its scope (whether or not it exists, as the proxy), else 404 when there is none. */
async function scopedCluster(deps: HubApiDeps, user: Operator | undefined, name: string): Promise<ManagedCluster> {
  const c = await deps.store.get('ManagedCluster', name);
  const outOfScope = user ? proxyScopeError(user, name, c) : undefined;
  if (outOfScope) throw outOfScope;
  if (!c) throw new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(name)}`);
  return c;
}

/** The PKI, or the refusal a hub without one gives. */
function pkiOf(deps: HubApiDeps): HubPki {
  if (!deps.pki) throw new HawserError(ErrorCode.PkiUnmanaged, 'this hub has no PKI to show or rotate');
  return deps.pki;
}

/** A PKI route's reply; the audit line names the CAs and serving certificate after the change. */
function pkiReply(ctx: RouteContext, state: PkiState): Reply {
  Object.assign(ctx.auditDetails, {
    bundleVersion: state.bundleVersion,
    cas: state.cas.map((c) => c.fingerprint),
    servingCertificate: state.servingCertificate.fingerprint,
  });
  return [200, { apiVersion: 'v1', kind: 'PKI', ...state }];
}

function pkiRoutes(deps: HubApiDeps): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/pki$/,
      access: 'viewer',
      handle: async ({ user }) => {
        const state = pkiOf(deps).state();
        const sent = deps.trustBundleSent?.() ?? new Map<string, number>();
        // Before `rotate serving-cert`, every agent should have the new bundle: those still waiting are named.
        const clusters = (await deps.store.list('ManagedCluster')).items.filter(({ object: c }) => inScope(user, c));
        const agents = clusters.map(({ object: c }) => {
          const version = sent.get(c.metadata.name) ?? 0;
          return { cluster: c.metadata.name, bundleVersionSent: version, upToDate: version === state.bundleVersion };
        });
        return [200, { apiVersion: 'v1', kind: 'PKI', ...state, agents }];
      },
    },
    { method: 'POST', path: /^\/api\/v1\/pki\/(ca)\/rotate$/, access: 'admin', audit: 'rotate-ca', handle: async (ctx) => pkiReply(ctx, await pkiOf(deps).rotateCa()) },
    {
      method: 'POST',
      path: /^\/api\/v1\/pki\/(ca)\/finish$/,
      access: 'admin',
      audit: 'finish-ca-rotation',
      handle: async (ctx) => pkiReply(ctx, await pkiOf(deps).finishCaRotation()),
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/pki\/(serving-cert)\/rotate$/,
      access: 'admin',
      audit: 'rotate-serving-cert',
      handle: async (ctx) => pkiReply(ctx, await pkiOf(deps).rotateServingCert()),
    },
  ];
}

export function hubApiRoutes(deps: HubApiDeps): Route[] {
  const view = deps.clusterView ?? ((c: ManagedCluster) => c);
  return [
    ...pkiRoutes(deps),
    ...(deps.resources ? resourceRoutes(deps.resources, deps.maxRequestBytes ?? defaultMaxRequestBytes) : []),
    { method: 'GET', path: /^\/healthz$/, access: 'public', handle: async () => [200, 'ok', 'text/plain'] },
    {
      method: 'GET',
      path: /^\/metrics$/,
      access: deps.metricsAnonymous ? 'public' : 'viewer',
      handle: async () => [200, await deps.metrics.registry.metrics(), deps.metrics.registry.contentType],
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clusters$/,
      access: 'viewer',
      handle: async ({ user }) => {
        const visible = (await deps.store.list('ManagedCluster')).items.filter((e) => inScope(user, e.object));
        return [200, { apiVersion: 'v1', kind: 'List', items: await Promise.all(visible.map((e) => withSyncStatus(deps.store, view(e.object)))) }];
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clusters\/([^/]+)$/,
      access: 'viewer',
      handle: async ({ params: [name], user }) => [200, await withSyncStatus(deps.store, view(await scopedCluster(deps, user, name!)))],
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/clusters\/([^/]+)\/sync\/confirm-prune$/,
      access: 'admin',
      audit: 'confirm-prune',
      handle: async (ctx) => {
        if (!deps.syncSessions) throw new HawserError(ErrorCode.ClusterOffline, 'this hub runs no sync');
        if (ctx.user?.clusters) await scopedCluster(deps, ctx.user, ctx.params[0]!);
        let body: unknown;
        try {
          body = JSON.parse(await readBody(ctx.req, 64 * 1024));
        } catch (err) {
          if (err instanceof HawserError) throw err;
          throw new HawserError(ErrorCode.InvalidOption, `confirm-prune body is not JSON: ${(err as Error).message}`);
        }
        const named = parseConfirmPrune(body);
        Object.assign(ctx.auditDetails, { incarnation: boundedText(named.incarnation, 64), revision: named.revision });
        const result = await confirmPrune(deps.store, deps.syncSessions, ctx.params[0]!, named, actor(ctx));
        return [200, { kind: 'Status', status: 'Success', details: result }];
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clusterregistrationrequests$/,
      access: 'viewer',
      handle: async () => [200, { apiVersion: 'v1', kind: 'List', items: (await deps.store.list('ClusterRegistrationRequest')).items.map((e) => e.object) }],
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/clusterregistrationrequests\/([^/]+)\/approve$/,
      access: 'admin',
      audit: 'approve',
      handle: async (ctx) => {
        const { request, audit } = await deps.registrar.approve(ctx.params[0]!, actor(ctx));
        Object.assign(ctx.auditDetails, audit);
        return [200, request];
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/clusterregistrationrequests\/([^/]+)\/deny$/,
      access: 'admin',
      audit: 'deny',
      handle: async (ctx) => {
        const { request, audit } = await deps.registrar.deny(ctx.params[0]!, actor(ctx));
        Object.assign(ctx.auditDetails, audit);
        return [200, request];
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/clusters\/([^/]+)$/,
      access: 'admin',
      audit: 'delete-cluster',
      handle: async (ctx) => {
        if (ctx.user?.clusters) await scopedCluster(deps, ctx.user, ctx.params[0]!);
        const { audit } = await deps.registrar.deleteCluster(ctx.params[0]!, actor(ctx));
        Object.assign(ctx.auditDetails, audit);
        return [200, { kind: 'Status', status: 'Success', details: audit }];
      },
    },
  ];
}

export function createHubApi(deps: HubApiDeps): HubApiServer {
  const routes = hubApiRoutes(deps);

  const refuse = (res: ServerResponse, req: IncomingMessage, path: string, error: HawserError, user?: Operator) => {
    deps.metrics.rejected.inc({ code: error.code });
    deps.logger.warn(
      { code: error.code, user: user?.name, method: req.method, path: quoteBounded(path), peer: req.socket.remoteAddress },
      'api request refused',
    );
    const headers: Record<string, string> = error.code === ErrorCode.Unauthenticated ? { 'www-authenticate': 'Bearer realm="hawser"' } : {};
    send(res, statusForCode[error.code]!, error.toJSON(), 'application/json', headers);
  };

  /**
   * The proxy route of a request, with its operator, or the refusal: 400 for
   * a bad path, 401 without a valid token, 403 outside the operator's scope.
   * undefined when the URL is no proxy route.
   */
  const proxyAccess = (req: IncomingMessage): { route: ProxyRoute; user: Operator } | { error: HawserError } | undefined => {
    if (!deps.proxy) return undefined;
    let route: ProxyRoute | undefined;
    try {
      route = parseProxyPath(req.url ?? '/');
    } catch (err) {
      return { error: toHawserError(err) };
    }
    if (!route) return undefined;
    const user = deps.authenticator.authenticate(req.headers.authorization);
    if (!user) {
      const why = req.headers.authorization ? 'the bearer token is not valid' : 'no bearer token (Authorization: Bearer TOKEN)';
      return { error: new HawserError(ErrorCode.Unauthenticated, `${why}; operators' tokens are in the hub's operator tokens file`) };
    }
    return { route, user };
  };

  const proxyRefused = (req: IncomingMessage, error: HawserError) => {
    deps.metrics.rejected.inc({ code: error.code });
    deps.logger.warn({ code: error.code, method: req.method, path: quoteBounded((req.url ?? '/').split('?')[0]!), peer: req.socket.remoteAddress }, 'proxy request refused');
  };

  const refuseProxyRequest = (req: IncomingMessage, res: ServerResponse, error: HawserError) => {
    proxyRefused(req, error);
    const headers: Record<string, string> = error.code === ErrorCode.Unauthenticated ? { 'www-authenticate': 'Bearer realm="hawser"' } : {};
    let path: string | undefined;
    try {
      path = parseProxyPath(req.url ?? '/')?.path;
    } catch {
      // A path that does not parse gets the Status.
    }
    const { status, body, contentType } = proxyErrorBody(error, path);
    send(res, status, body, contentType, headers);
  };

  /** Authenticated: may this operator send this request to this cluster (proxy.ts authorizeProxy)? */
  const authorized = (req: IncomingMessage, access: { route: ProxyRoute; user: Operator }): Promise<HawserError | undefined> =>
    authorizeProxy(deps.store, access.user, access.route.cluster, Object.keys(req.headers)).catch((err: unknown) => toHawserError(err));

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const access = proxyAccess(req);
    if (access && 'error' in access) return refuseProxyRequest(req, res, access.error);
    if (access) {
      void authorized(req, access).then((refused) =>
        refused ? refuseProxyRequest(req, res, refused) : deps.proxy!.request(req, res, access.user, access.route),
      );
      return;
    }
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const search = q < 0 ? '' : url.slice(q + 1);
    const matching = routes.filter((r) => r.path.test(path));
    const route = matching.find((r) => r.method === req.method);
    if (!route) {
      if (matching.length > 0) return send(res, 405, { code: ErrorCode.MethodNotAllowed, message: `${quoteBounded(req.method ?? '')} is not allowed on ${quoteBounded(path)}` });
      return send(res, 404, { code: ErrorCode.NotFound, message: `no such endpoint: ${quoteBounded(path)}` });
    }
    let user: Operator | undefined;
    if (route.access !== 'public') {
      user = deps.authenticator.authenticate(req.headers.authorization);
      if (!user) {
        const why = req.headers.authorization ? 'the bearer token is not valid' : 'no bearer token (Authorization: Bearer TOKEN)';
        return refuse(res, req, path, new HawserError(ErrorCode.Unauthenticated, `${why}; operators' tokens are in the hub's operator tokens file`));
      }
      if (!roleAllows(user.role, route.access)) {
        return refuse(
          res,
          req,
          path,
          new HawserError(ErrorCode.Forbidden, `user "${user.name}" (role ${user.role}) may not ${req.method} ${quoteBounded(path)}: it needs role ${route.access}`),
          user,
        );
      }
    }
    let params: string[];
    try {
      params = path.match(route.path)!.slice(1).map(pathSegment);
    } catch (err) {
      const error = toHawserError(err);
      return send(res, statusForCode[error.code] ?? 400, error.toJSON());
    }
    const ctx: RouteContext = { params, query: new URLSearchParams(search), req, user, auditDetails: {} };
    const audit = (outcome: 'ok' | 'failed', code?: string) => {
      if (!route.audit) return;
      deps.logger.info(
        {
          ...ctx.auditDetails,
          audit: true,
          user: user?.name,
          role: user?.role,
          action: route.audit,
          target: boundedTarget(params[0] ?? ''),
          outcome,
          ...(code ? { code } : {}),
        },
        `audit: ${route.audit}`,
      );
    };
    route.handle(ctx).then(
      ([status, body, type]) => {
        audit('ok');
        if (!(body instanceof StreamBody)) return send(res, status, body, type);
        // A stream (watch) runs until the client goes away.
        const closed = new AbortController();
        res.once('close', () => closed.abort());
        body.write(res, closed.signal).catch((err: unknown) => {
          deps.logger.error({ err, path: quoteBounded(path) }, 'api stream failed');
          res.destroy();
        });
      },
      (err: unknown) => {
        const error = toHawserError(err);
        audit('failed', error.code);
        const status = statusForCode[error.code] ?? 500;
        if (status === 500) deps.logger.error({ err, path: quoteBounded(path) }, 'api request failed');
        else if (status !== 404) {
          // Bad input (an invalid object, an unknown kind, a body too large) is logged and counted, like a bad frame.
          deps.metrics.rejected.inc({ code: error.code });
          deps.logger.warn({ code: error.code, user: user?.name, method: req.method, path: quoteBounded(path), message: boundedText(error.message, 1024) }, 'api request refused');
        }
        send(res, status, error.toJSON());
      },
    );
  };

  const server = deps.tls ? createTlsServer({ cert: deps.tls.certPem, key: deps.tls.keyPem }, handler) : createServer(handler);
  // Upgrades (kubectl exec, attach, port-forward) reach only the proxy.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const access = proxyAccess(req);
    const refuse = (error: HawserError) => {
      if (access) proxyRefused(req, error);
      const { status, body } = proxyErrorBody(error);
      const challenge = error.code === ErrorCode.Unauthenticated ? 'WWW-Authenticate: Bearer realm="hawser"\r\n' : '';
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${challenge}Connection: close\r\n\r\n${body}`);
    };
    if (access && !('error' in access)) {
      void authorized(req, access).then((refused) => (refused ? refuse(refused) : deps.proxy!.upgrade(req, socket, head, access.user, access.route)));
      return;
    }
    refuse(access?.error ?? new HawserError(ErrorCode.NotFound, `no upgrade endpoint: ${quoteBounded((req.url ?? '/').split('?')[0]!)}`));
  });
  return server;
}
