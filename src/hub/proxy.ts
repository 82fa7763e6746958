import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { boundedText, quoteBounded } from '../api/index.js';
import {
  bodyAfter,
  type ByteStream,
  drained,
  encodeRequestHead,
  ErrorCode,
  Feature,
  forwardedRequestHeaders,
  HawserError,
  proxyStreamKind,
  proxyWire,
  readResponseHead,
  refusalAsText,
  toHawserError,
} from '../tunnel/index.js';
import type { Operator } from './auth.js';
import type { HubMetrics } from './metrics.js';
import type { ProxyRoute } from './proxy-paths.js';
import { authorizeProxyScope, clientImpersonationRefusal } from './proxy-auth.js';
import type { SessionContext } from './session.js';
import type { HubStore } from './store.js';

// The hub's end of kubectl through the hub: each request to a proxy route
// (proxy-paths.ts) gets its own stream on the cluster's agent connection. The
// head names the operator the agent impersonates; the operator's own
// credential and any Impersonate-* header never leave the hub. Bodies stream
// both ways with backpressure; an Upgrade (exec, attach, port-forward) becomes
// raw bytes both ways after the agent's 101.

/**
 * May this operator send this request to this cluster through the proxy? Not
 * when it asks to impersonate by itself (kubectl --as), nor when the cluster is
 * outside the operator's scope (auth.ts; none: every cluster). Past the hub, the
 * agent's impersonation policy and then the cluster's own RBAC decide.
 * Returns the refusal (403), or undefined.
 */
export async function authorizeProxy(
  store: Pick<HubStore, 'get' | 'list'>,
  operator: Operator,
  cluster: string,
  headerNames: Iterable<string>,
): Promise<HawserError | undefined> {
  return clientImpersonationRefusal(headerNames) ?? (await authorizeProxyScope(store, operator, cluster));
}

/** What the proxy needs of the hub's sessions. */
export interface ProxySessions {
  /** The live session of a cluster named by name or id. */
  sessionFor(nameOrId: string): SessionContext | undefined;
  /** When the cluster's last session ended in this hub's life. */
  disconnectedSince(clusterName: string): number | undefined;
}

export interface HubProxyDeps {
  sessions: ProxySessions;
  store: HubStore;
  metrics: HubMetrics;
  logger: Logger;
  now?: () => number;
}

const statusForCode: Partial<Record<string, number>> = {
  [ErrorCode.ClusterOffline]: 503,
  [ErrorCode.SessionEnded]: 503,
  [ErrorCode.ProxyUnsupported]: 502,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MalformedPath]: 400,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.ClusterOutOfScope]: 403,
  [ErrorCode.ImpersonationRefused]: 403,
  [ErrorCode.DeadlineExceeded]: 504,
};

const reasonFor: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 504: 'Timeout' };

/** The HTTP status a proxy refusal gets. */
export function proxyErrorStatus(error: HawserError): number {
  return statusForCode[error.code] ?? 502;
}

/**
 * A Kubernetes Status (kubectl prints its message); the HAWSER_ code is its cause's reason.
 * On kubectl's discovery paths (`path`, the target's), the same words as text (refusalAsText).
 */
export function proxyErrorBody(error: HawserError, path?: string): { status: number; body: string; contentType: string } {
  const status = proxyErrorStatus(error);
  if (refusalAsText(path)) return { status, body: `${error.code}: ${error.message}\n`, contentType: 'text/plain; charset=utf-8' };
  const body = JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `${error.code}: ${error.message}`,
    reason: reasonFor[status] ?? 'ServiceUnavailable',
    details: { causes: [{ reason: error.code, message: error.message }] },
    code: status,
  });
  return { status, body, contentType: 'application/json' };
}

/** Whether a request carries a body (RFC 9112 6.3): Transfer-Encoding, or a Content-Length above 0. */
function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

export class HubProxy {
  private readonly now: () => number;

  constructor(private readonly deps: HubProxyDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Why the cluster has no session: offline (and since when), or no such cluster. */
  private async offline(ref: string): Promise<HawserError> {
    const byName = await this.deps.store.get('ManagedCluster', ref);
    const cluster = byName ?? (await this.deps.store.list('ManagedCluster')).items.map((e) => e.object).find((c) => c.spec.clusterId === ref);
    if (!cluster) return new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(ref)} (by name or cluster id)`);
    const name = cluster.metadata.name;
    const since = this.deps.sessions.disconnectedSince(name);
    const when = since !== undefined ? new Date(since).toISOString() : cluster.status.lastObservedTime;
    return new HawserError(
      ErrorCode.ClusterOffline,
      `cluster "${name}" is offline${when ? ` since ${when}` : ''}: its agent is not connected to the hub, so nothing can reach it now`,
    );
  }

  /**
   * Opens the request's stream and sends its head: in the stream's request itself (its
   * prelude) when the agent negotiated it, so the agent sends the request to its target
   * while the stream is still opening; else as the stream's first bytes.
   */
  private async open(req: IncomingMessage, operator: Operator, route: ProxyRoute, upgrade: boolean, noBody: boolean, signal: AbortSignal): Promise<ByteStream> {
    const session = this.deps.sessions.sessionFor(route.cluster);
    if (!session) throw await this.offline(route.cluster);
    const head: proxyWire.ProxyRequestHead = {
      method: req.method ?? 'GET',
      path: route.path,
      headers: forwardedRequestHeaders(req.rawHeaders, upgrade),
      targetKind: route.target.kind === 'https' ? proxyWire.ProxyTargetKind.PROXY_TARGET_KIND_HTTPS : proxyWire.ProxyTargetKind.PROXY_TARGET_KIND_DIRECT,
      targetAddress: route.target.kind === 'https' ? route.target.address : '',
      user: operator.name,
      groups: operator.groups ?? [],
      upgrade,
      noBody,
    };
    const inPrelude = session.negotiated.features.has(Feature.ProxyPrelude);
    const stream = await session.openStream(proxyStreamKind, signal, inPrelude ? { prelude: encodeRequestHead(head) } : undefined);
    const { metrics } = this.deps;
    metrics.proxyStreamsOpen.inc();
    void stream.closed.then(() => metrics.proxyStreamsOpen.dec());
    if (inPrelude) return stream;
    try {
      await stream.write(encodeRequestHead(head));
    } catch (err) {
      stream.abort();
      throw err;
    }
    return stream;
  }

  /**
   * A failure on the way, as the client should hear it. Called only when the
   * client is still there: a stream that then ends with a cancel or a broken
   * transport lost its agent connection (the agent itself answers every
   * failure of its own in a response head).
   */
  private explain(err: unknown, route: ProxyRoute): HawserError {
    const error = toHawserError(err, ErrorCode.ProxyUpstream);
    if (error.code === ErrorCode.SessionEnded || error.code === ErrorCode.Cancelled || error.code === ErrorCode.Unavailable) {
      return new HawserError(ErrorCode.SessionEnded, `the link to cluster ${quoteBounded(route.cluster)} dropped while the request was in flight (${boundedText(error.message, 256)})`);
    }
    return error;
  }

  private count(code: string): void {
    this.deps.metrics.proxyRequests.inc({ code });
  }

  /** Refuses a request before anything was proxied; counted as the hub counts refusals. */
  refuse(res: ServerResponse, error: HawserError, path?: string): void {
    const { status, body, contentType } = proxyErrorBody(error, path);
    this.count(String(status));
    if (res.headersSent) return void res.destroy();
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  /** An ordinary request: head, request body up, response head and body down. */
  async request(req: IncomingMessage, res: ServerResponse, operator: Operator, route: ProxyRoute): Promise<void> {
    const cancel = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) cancel.abort(new HawserError(ErrorCode.Cancelled, 'the client went away'));
    });
    let stream: ByteStream;
    const noBody = !hasBody(req);
    try {
      stream = await this.open(req, operator, route, false, noBody, cancel.signal);
    } catch (err) {
      if (cancel.signal.aborted) return this.count('aborted');
      return this.refuse(res, this.explain(err, route), route.path);
    }
    let uploaded = false;
    const upload = (async () => {
      try {
        if (!noBody) for await (const chunk of req) await stream.write(chunk as Buffer);
        await stream.end();
        uploaded = true;
      } catch {
        // The stream failed: the download side says why.
      }
    })();
    try {
      const read = await readResponseHead(stream);
      const headers: string[] = [];
      for (const h of read.head.headers) headers.push(h.name, h.value);
      res.writeHead(read.head.status, headers);
      for await (const chunk of bodyAfter(read)) {
        if (!res.write(chunk)) await drained(res);
        if (res.destroyed) throw new HawserError(ErrorCode.Cancelled, 'the client went away');
      }
      res.end();
      this.count(String(read.head.status));
    } catch (err) {
      const error = this.explain(err, route);
      if (cancel.signal.aborted || res.destroyed) this.count('aborted');
      else if (!res.headersSent) this.refuse(res, error, route.path);
      else {
        // Mid-answer: only breaking the connection tells the client the answer is incomplete.
        this.count('aborted');
        this.deps.logger.warn({ code: error.code, cluster: route.cluster }, `proxied response broke off: ${boundedText(error.message, 512)}`);
        res.destroy();
      }
    } finally {
      // The answer is out (or failed): a request body still going up is of no use any more.
      if (!uploaded) stream.abort(new HawserError(ErrorCode.Cancelled, 'the response is complete; the rest of the request body is not needed'));
      await upload;
    }
  }

  /** An HTTP/1.1 Upgrade: head, then after the agent's 101 raw bytes both ways on the client's socket. */
  async upgrade(req: IncomingMessage, socket: Duplex, early: Buffer, operator: Operator, route: ProxyRoute): Promise<void> {
    socket.on('error', () => undefined);
    const cancel = new AbortController();
    socket.once('close', () => cancel.abort(new HawserError(ErrorCode.Cancelled, 'the client went away')));
    let stream: ByteStream;
    try {
      stream = await this.open(req, operator, route, true, false, cancel.signal);
    } catch (err) {
      if (cancel.signal.aborted) return this.count('aborted');
      return this.refuseUpgrade(socket, this.explain(err, route));
    }
    void stream.closed.then((error) => {
      if (error) socket.destroy();
    });
    const up = (async () => {
      try {
        if (early.byteLength > 0) await stream.write(early);
        for await (const chunk of socket) await stream.write(chunk as Buffer);
        await stream.end();
      } catch {
        stream.abort(new HawserError(ErrorCode.Cancelled, 'the client\'s upgraded connection broke'));
      }
    })();
    try {
      const read = await readResponseHead(stream);
      const status = read.head.status;
      let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
      for (const h of read.head.headers) text += `${h.name}: ${h.value.replace(/[\r\n]/g, ' ')}\r\n`;
      if (status !== 101) text += 'Connection: close\r\n';
      socket.write(`${text}\r\n`);
      for await (const chunk of bodyAfter(read)) {
        if (!socket.write(chunk)) await drained(socket);
        if (socket.destroyed) throw new HawserError(ErrorCode.Cancelled, 'the client went away');
      }
      socket.end();
      this.count(String(status));
    } catch (err) {
      if (cancel.signal.aborted || socket.destroyed) this.count('aborted');
      else {
        const error = this.explain(err, route);
        this.deps.logger.warn({ code: error.code, cluster: route.cluster }, `proxied upgrade broke off: ${boundedText(error.message, 512)}`);
        this.count('aborted');
      }
      socket.destroy();
    } finally {
      await up;
    }
  }

  /** Refuses an upgrade request on its raw socket. */
  refuseUpgrade(socket: Duplex, error: HawserError): void {
    const { status, body } = proxyErrorBody(error);
    this.count(String(status));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
}
