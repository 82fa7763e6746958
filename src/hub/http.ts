import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ErrorCode, HawserError, quoteBounded, toHawserError } from '../tunnel/index.js';
import type { HubMetrics } from './metrics.js';
import type { OperatorAction, Registrar } from './registration.js';
import type { HubStore } from './store.js';

// The operators' HTTP API: read clusters and registration requests, approve
// requests, scrape metrics. Bound to loopback by default (see README).

const statusForCode: Partial<Record<string, number>> = {
  [ErrorCode.NotFound]: 404,
  [ErrorCode.InvalidOption]: 400,
  [ErrorCode.RegistrationDenied]: 409,
  [ErrorCode.AlreadyRegistered]: 409,
  [ErrorCode.MalformedPath]: 400,
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
}

function send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function createHubApi(deps: HubApiDeps): Server {
  // Operators do not log in yet (issue 5, section 3 adds it); until then every action is anonymous.
  const actor = 'anonymous';
  const auditLine = (audit: OperatorAction) => deps.logger.info({ audit: true, ...audit, at: new Date().toISOString() }, `audit: ${audit.action}`);
  const routes: Array<[string, RegExp, (m: RegExpMatchArray, req: IncomingMessage) => Promise<[number, unknown, string?]>]> = [
    ['GET', /^\/healthz$/, async () => [200, 'ok', 'text/plain']],
    ['GET', /^\/metrics$/, async () => [200, await deps.metrics.registry.metrics(), deps.metrics.registry.contentType]],
    [
      'GET',
      /^\/api\/v1\/clusters$/,
      async () => [200, { apiVersion: 'v1', kind: 'List', items: await deps.store.list('ManagedCluster') }],
    ],
    [
      'GET',
      /^\/api\/v1\/clusters\/([^/]+)$/,
      async (m) => {
        const name = pathSegment(m[1]!);
        const c = await deps.store.get('ManagedCluster', name);
        if (!c) throw new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(name)}`);
        return [200, c];
      },
    ],
    [
      'GET',
      /^\/api\/v1\/clusterregistrationrequests$/,
      async () => [200, { apiVersion: 'v1', kind: 'List', items: await deps.store.list('ClusterRegistrationRequest') }],
    ],
    [
      'POST',
      /^\/api\/v1\/clusterregistrationrequests\/([^/]+)\/approve$/,
      async (m) => {
        const { request, audit } = await deps.registrar.approve(pathSegment(m[1]!), actor);
        auditLine(audit);
        return [200, request];
      },
    ],
    [
      'POST',
      /^\/api\/v1\/clusterregistrationrequests\/([^/]+)\/deny$/,
      async (m) => {
        const { request, audit } = await deps.registrar.deny(pathSegment(m[1]!), actor);
        auditLine(audit);
        return [200, request];
      },
    ],
    [
      'DELETE',
      /^\/api\/v1\/clusters\/([^/]+)$/,
      async (m) => {
        const { audit } = await deps.registrar.deleteCluster(pathSegment(m[1]!), actor);
        auditLine(audit);
        return [200, { kind: 'Status', status: 'Success', details: audit }];
      },
    ],
  ];

  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const matching = routes.filter(([, re]) => re.test(path));
    const route = matching.find(([method]) => method === req.method);
    if (!route) {
      if (matching.length > 0) return send(res, 405, { code: 'HAWSER_METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on ${quoteBounded(path)}` });
      return send(res, 404, { code: ErrorCode.NotFound, message: `no such endpoint: ${quoteBounded(path)}` });
    }
    route[2](path.match(route[1])!, req).then(
      ([status, body, type]) => send(res, status, body, type),
      (err: unknown) => {
        const error = toHawserError(err);
        const status = statusForCode[error.code] ?? 500;
        if (status === 500) deps.logger.error({ err, path: quoteBounded(path) }, 'api request failed');
        send(res, status, error.toJSON());
      },
    );
  });
}
