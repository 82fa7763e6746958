import { type ClientRequest, type IncomingMessage, request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { Socket } from 'node:net';
import { type ConnectionOptions, createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { boundedText, quoteBounded } from '../api/core.js';
import {
  bodyAfter,
  type ByteStream,
  decodeRequestHead,
  drained,
  encodeResponseHead,
  ErrorCode,
  Feature,
  forwardedResponseHeaders,
  HawserError,
  type HeadRead,
  proxyStreamKind,
  proxyWire,
  readRequestHead,
  refusalAsText,
  toHawserError,
} from '../tunnel/index.js';
import { impersonationHeaders } from './impersonation.js';
import type { ImpersonationPolicy } from './impersonation-policy.js';
import type { KubeAccess } from './kubeconfig.js';
import type { AgentMetrics } from './metrics.js';
import type { AgentFrameHandler, AgentHandlerFactory, AgentSessionContext } from './router.js';

// The agent's end of kubectl through the hub: for each OpenStream of kind
// "proxy" it opens the stream, reads the request head, and sends the request
// to its cluster's kube-apiserver with its own credential, impersonating the
// operator (or, for proxy/https/HOST:PORT, to that host in the edge network).
// Bodies stream both ways with backpressure; an upgrade (exec, attach,
// port-forward) becomes raw bytes both ways after the 101. A stream the hub
// cancels aborts the request to the target.

const hostPortPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/;

export interface ProxyBackendOptions {
  kubeConfig: KubeAccess;
  /** Whom requests may impersonate (--proxy-impersonate-users/-groups); default any non-system: name. */
  impersonation?: ImpersonationPolicy;
  /** PEM CAs trusted for proxy/https targets besides the system roots (and the cluster's CA). */
  httpsTargetCaPem?: string;
  metrics: AgentMetrics;
  logger: Logger;
}

/** A Kubernetes Status body, which kubectl prints as the error; on its discovery paths the same words as text (refusalAsText). */
function statusBody(status: number, error: HawserError, path?: string): { body: Buffer; contentType: string } {
  if (refusalAsText(path)) return { body: Buffer.from(`${error.code}: ${error.message}\n`), contentType: 'text/plain; charset=utf-8' };
  const reason = status === 403 ? 'Forbidden' : status === 400 ? 'BadRequest' : 'ServiceUnavailable';
  const body = Buffer.from(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `${error.code}: ${error.message}`, reason, code: status }));
  return { body, contentType: 'application/json' };
}

function statusFor(error: HawserError): number {
  if (error.code === ErrorCode.ImpersonationRefused) return 403;
  if (error.code === ErrorCode.ProxyProtocol) return 400;
  return 502;
}

/** Request headers in order, repeated names kept (Node's request takes an object: a repeated name becomes an array). */
class HeaderList {
  private readonly byName = new Map<string, { name: string; values: string[] }>();

  add(name: string, value: string): void {
    const key = name.toLowerCase();
    const entry = this.byName.get(key);
    if (entry) entry.values.push(value);
    else this.byName.set(key, { name, values: [value] });
  }

  toObject(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const { name, values } of this.byName.values()) out[name] = values.length === 1 ? values[0]! : values;
    return out;
  }
}

export class ProxyBackend {
  private readonly server: URL;
  private keepAlive: Agent | undefined;
  private httpsTargetPool: { agent: Agent; secureContext: SecureContext } | undefined;
  private keepAliveKey = '';

  constructor(private readonly options: ProxyBackendOptions) {
    this.server = new URL(options.kubeConfig.getCurrentCluster()!.server);
  }

  /** The handler of OpenStream frames for every welcomed session that negotiated proxy streams. */
  handlerFactory(): AgentHandlerFactory {
    return (session) => this.sessionHandler(session);
  }

  private sessionHandler(session: AgentSessionContext): AgentFrameHandler {
    return {
      name: 'proxy',
      kinds: ['openStream'],
      // Each frame is only a stream to open: handled at once, never waiting for the request.
      queueLimit: 4096,
      handle: (frame) => {
        if (frame.$case !== 'openStream') return;
        const { streamId, kind } = frame.value;
        if (kind !== proxyStreamKind || !session.openStream || !session.negotiated.features.has(Feature.ProxyStreams)) {
          this.options.logger.warn({ kind: quoteBounded(kind, 64) }, 'the hub asked for a stream this agent does not serve');
          return;
        }
        const early = frame.value.prelude.byteLength > 0;
        // With the head in hand the answer may start before the hub's acceptance comes back.
        const opened = session.openStream(proxyStreamKind, session.ended, { requestId: streamId, early });
        const failed = (err: unknown) => this.options.logger.debug({ err: toHawserError(err).message, streamId: quoteBounded(streamId, 64) }, 'could not open a proxy stream');
        // The head came with the request (feature proxy-prelude): the target is asked while the stream opens.
        if (early) void this.serveEarly(opened, frame.value.prelude, failed);
        else opened.then((stream) => void this.serve(stream), failed);
      },
    };
  }

  /** Serves one proxied request on its stream, its head the stream's first bytes; never rejects. */
  async serve(stream: ByteStream): Promise<void> {
    const { metrics } = this.options;
    metrics.proxyStreamsOpen.inc();
    try {
      let read: HeadRead<proxyWire.ProxyRequestHead>;
      try {
        read = await readRequestHead(stream);
      } catch (err) {
        return await this.answerError(stream, toHawserError(err, ErrorCode.ProxyProtocol));
      }
      await this.forwardAndCount(Promise.resolve(stream), read.head, bodyAfter(read));
    } finally {
      await stream.closed;
      metrics.proxyStreamsOpen.dec();
    }
  }

  /** Serves one proxied request whose head came in its OpenStream, while its stream opens; never rejects. */
  private async serveEarly(opened: Promise<ByteStream>, prelude: Uint8Array, failed: (err: unknown) => void): Promise<void> {
    const { metrics } = this.options;
    metrics.proxyStreamsOpen.inc();
    opened.catch(failed);
    try {
      let head: proxyWire.ProxyRequestHead;
      try {
        head = decodeRequestHead(prelude);
      } catch (err) {
        const stream = await opened.catch(() => undefined);
        if (stream) await this.answerError(stream, toHawserError(err, ErrorCode.ProxyProtocol));
        return;
      }
      // The body, if any, is all the stream brings from the hub.
      const body = (async function* () {
        yield* (await opened).chunks();
      })();
      await this.forwardAndCount(opened, head, body);
    } finally {
      const stream = await opened.catch(() => undefined);
      await stream?.closed;
      metrics.proxyStreamsOpen.dec();
    }
  }

  private async forwardAndCount(opened: Promise<ByteStream>, head: proxyWire.ProxyRequestHead, body: AsyncIterable<Uint8Array>): Promise<void> {
    let code: string;
    try {
      code = await this.forward(opened, head, body);
    } catch (err) {
      const error = toHawserError(err, ErrorCode.ProxyUpstream);
      code = error.code;
      const stream = await opened.catch(() => undefined);
      // No stream: the hub is gone or gave up, and nobody is left to tell.
      if (stream) await this.answerError(stream, error, head.path);
    }
    this.options.metrics.proxyRequests.inc({ code });
  }

  /** Answers on the stream itself (no response head went out yet), then ends it. */
  private async answerError(stream: ByteStream, error: HawserError, path?: string): Promise<void> {
    const status = statusFor(error);
    this.options.logger.warn({ code: error.code, status }, `proxied request not forwarded: ${boundedText(error.message, 512)}`);
    const { body, contentType } = statusBody(status, error, path);
    try {
      await stream.write(
        encodeResponseHead({
          status,
          errorCode: error.code,
          headers: [
            { name: 'Content-Type', value: contentType },
            { name: 'Content-Length', value: String(body.byteLength) },
          ],
        }),
      );
      await stream.write(body);
      await stream.end();
    } catch {
      // The hub went away: nobody is left to tell.
    }
    // A request body still coming is the hub's to stop: it cancels the stream once the answer is out.
  }

  /** Request options for the head's target, with credentials. */
  private async target(head: proxyWire.ProxyRequestHead): Promise<{ url: URL; options: RequestOptions }> {
    if (!head.path.startsWith('/')) throw new HawserError(ErrorCode.ProxyProtocol, `proxied path ${quoteBounded(head.path)} does not start with "/"`);
    const headers = new HeaderList();
    for (const h of head.headers) {
      // Only this agent sets who the request acts as.
      if (h.name.toLowerCase().startsWith('impersonate-')) continue;
      headers.add(h.name, h.value);
    }
    if (head.targetKind === proxyWire.ProxyTargetKind.PROXY_TARGET_KIND_HTTPS) {
      if (!hostPortPattern.test(head.targetAddress)) {
        throw new HawserError(ErrorCode.ProxyProtocol, `proxy target ${quoteBounded(head.targetAddress)} is not HOST:PORT`);
      }
      const url = new URL(`https://${head.targetAddress}${head.path}`);
      const targets = this.httpsTargets();
      // Upgraded connections leave the pool; either way the trust store is built once, not per request.
      const agent = head.upgrade ? false : targets.agent;
      // secureContext reaches tls.connect through the agent (https.RequestOptions does not name it).
      const options: RequestOptions & Pick<ConnectionOptions, 'secureContext'> = { method: head.method, headers: headers.toObject(), secureContext: targets.secureContext, agent };
      return { url, options };
    }
    if (head.targetKind !== proxyWire.ProxyTargetKind.PROXY_TARGET_KIND_DIRECT) {
      throw new HawserError(ErrorCode.ProxyProtocol, `proxy target kind ${head.targetKind} is not one this agent knows`);
    }
    for (const [name, value] of impersonationHeaders({ user: head.user, groups: head.groups }, this.options.impersonation)) headers.add(name, value);
    const url = new URL(head.path, this.server);
    const options: RequestOptions = { method: head.method };
    // Credentials are read per request: a token file or exec plugin may rotate them.
    await this.options.kubeConfig.applyToHTTPSOptions(options);
    for (const [name, value] of Object.entries(options.headers ?? {})) if (value !== undefined) headers.add(name, String(value));
    options.headers = headers.toObject();
    // Upgraded connections leave the pool; ordinary requests share kept-alive ones.
    options.agent = head.upgrade || url.protocol === 'http:' ? false : this.keepAliveAgent(options);
    return { url, options };
  }

  /**
   * Kept-alive connections to proxy/https targets, trusting the system roots
   * and --proxy-ca-file. Building a TLS context from ~145 roots took a third of
   * a second under load: once per agent, not once per request.
   */
  private httpsTargets(): { agent: Agent; secureContext: SecureContext } {
    if (!this.httpsTargetPool) {
      const secureContext = createSecureContext({ ca: [...rootCertificates, ...(this.options.httpsTargetCaPem ? [this.options.httpsTargetCaPem] : [])] });
      this.httpsTargetPool = { secureContext, agent: new Agent({ keepAlive: true, noDelay: true, secureContext }) };
    }
    return this.httpsTargetPool;
  }

  private keepAliveAgent(options: RequestOptions): Agent {
    const key = [options.ca, options.cert, options.key, options.rejectUnauthorized].map(String).join('\0');
    if (!this.keepAlive || key !== this.keepAliveKey) {
      this.keepAlive?.destroy();
      this.keepAliveKey = key;
      this.keepAlive = new Agent({
        keepAlive: true,
        // A request's head goes out at once, not held for the previous segment's ACK.
        noDelay: true,
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.cert ? { cert: options.cert } : {}),
        ...(options.key ? { key: options.key } : {}),
        ...(options.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.rejectUnauthorized }),
      });
    }
    return this.keepAlive;
  }

  /**
   * Sends the request and streams the answer back; resolves with the outcome's label once
   * the stream is done. The request goes to the target before the stream is open (when its
   * head came first); the answer waits for it.
   */
  private async forward(opened: Promise<ByteStream>, head: proxyWire.ProxyRequestHead, body: AsyncIterable<Uint8Array>): Promise<string> {
    const { url, options } = await this.target(head);
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    const req = send(url, options);
    // The hub cancelled (kubectl went away), the session ended, or the stream never opened:
    // the target hears of it at once.
    void opened.then(
      (stream) =>
        stream.closed.then((error) => {
          if (error) req.destroy(error);
        }),
      (error: unknown) => req.destroy(error as Error),
    );
    const answered = new Promise<{ res: IncomingMessage; socket?: Socket; upgradeHead?: Buffer }>((resolve, reject) => {
      req.once('response', (res) => resolve({ res }));
      req.once('upgrade', (res, socket, upgradeHead) => resolve({ res, socket, upgradeHead }));
      req.once('error', (err) =>
        reject(new HawserError(ErrorCode.ProxyUpstream, `${head.method} ${quoteBounded(url.pathname)} on ${url.host} failed: ${boundedText(err.message, 256)}`, { cause: err })),
      );
    });
    answered.catch(() => undefined);
    if (head.upgrade || head.noBody) req.end();
    else void pumpRequestBody(body, req);
    const stream = await opened;
    const { res, socket, upgradeHead } = await answered;
    const status = res.statusCode ?? 502;
    const upgraded = socket !== undefined;
    await stream.write(encodeResponseHead({ status, headers: forwardedResponseHeaders(res.rawHeaders, upgraded), errorCode: '' }));
    if (socket) {
      await spliceUpgraded(stream, body, socket, upgradeHead);
    } else {
      try {
        for await (const chunk of res) await stream.write(chunk as Buffer);
        await stream.end();
      } catch (err) {
        // The target broke off mid-answer: the hub ends the client's response at once, not cleanly.
        req.destroy();
        stream.abort(new HawserError(ErrorCode.ProxyUpstream, `${url.host} broke off its answer: ${boundedText((err as Error).message, 256)}`));
      }
    }
    await stream.closed;
    return String(status);
  }
}

/** The request body from the hub to the target, with backpressure; a failure ends the request. */
async function pumpRequestBody(body: AsyncIterable<Uint8Array>, req: ClientRequest): Promise<void> {
  try {
    for await (const chunk of body) {
      if (!req.write(chunk)) await drained(req);
      if (req.destroyed) return;
    }
    req.end();
  } catch (err) {
    req.destroy(err as Error);
  }
}

/** After a 101: raw bytes both ways until both sides ended, or either failed. */
async function spliceUpgraded(stream: ByteStream, fromHub: AsyncIterable<Uint8Array>, socket: Socket, upgradeHead: Buffer | undefined): Promise<void> {
  socket.setNoDelay(true);
  const toTarget = (async () => {
    try {
      for await (const chunk of fromHub) {
        if (!socket.write(chunk)) await drained(socket);
        if (socket.destroyed) return;
      }
      socket.end();
    } catch {
      socket.destroy();
    }
  })();
  // Once the stream is over nothing more can cross it: the target's connection goes too,
  // after what the hub sent reached it (a target that never closes its half must not hold it).
  void stream.closed.then(async (error) => {
    if (!error) await toTarget;
    socket.destroy();
  });
  const toHub = (async () => {
    try {
      if (upgradeHead && upgradeHead.byteLength > 0) await stream.write(upgradeHead);
      for await (const chunk of socket) await stream.write(chunk as Buffer);
      await stream.end();
    } catch {
      stream.abort(new HawserError(ErrorCode.ProxyUpstream, 'the upgraded connection to the target broke'));
    }
  })();
  await Promise.all([toTarget, toHub]);
}
