import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { Logger } from 'pino';
import { boundedText, defaultQuoteChars, type ManagedCluster, quoteBounded } from '../api/index.js';
import { ErrorCode, HawserError, toHawserError } from '../tunnel/index.js';
import { type Operator, type OperatorAuthenticator, type OperatorRole, roleAllows } from './auth.js';
import type { HubMetrics } from './metrics.js';
import type { HubPki, PkiState } from './pki.js';
import type { Registrar } from './registration.js';
import { defaultMaxRequestBytes, resourceRoutes, StreamBody } from './resources-http.js';
import type { ResourceService } from './resources.js';
import type { HubStore } from './store.js';

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
      handle: async () => {
        const state = pkiOf(deps).state();
        const sent = deps.trustBundleSent?.() ?? new Map<string, number>();
        // Before `rotate serving-cert`, every agent should have the new bundle: those still waiting are named.
        const agents = (await deps.store.list('ManagedCluster')).items.map(({ object: c }) => {
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
      handle: async () => [200, { apiVersion: 'v1', kind: 'List', items: (await deps.store.list('ManagedCluster')).items.map((e) => view(e.object)) }],
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clusters\/([^/]+)$/,
      access: 'viewer',
      handle: async ({ params: [name] }) => {
        const c = await deps.store.get('ManagedCluster', name!);
        if (!c) throw new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(name!)}`);
        return [200, view(c)];
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

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
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

  return deps.tls ? createTlsServer({ cert: deps.tls.certPem, key: deps.tls.keyPem }, handler) : createServer(handler);
}
