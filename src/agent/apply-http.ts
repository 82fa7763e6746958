import { Agent, request, type RequestOptions } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { KubeAccess } from './kubeconfig.js';
import { boundedText } from '../api/core.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// The apply engine's way to the API server: plain HTTP requests with the
// kubeconfig's credentials, one deadline over each whole exchange, on a
// keep-alive agent (a reconcile pass makes a request per object; a TLS
// handshake per request would cost more than the request).
//
// Why not KubernetesObjectApi: it converts every answer into the generated
// model classes (dates, renamed fields) that an apply report does not want,
// its discovery cache never refreshes a group it has seen (a CRD applied in
// the same set stays unknown), its errors carry whole response bodies and
// headers, and it takes no deadline. What we need from the library is the
// kubeconfig (credentials, CA, exec plugins): KubeAccess gives that.

export interface KubeResponse {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
}

export interface KubeRequest {
  method: 'GET' | 'PATCH' | 'DELETE' | 'POST' | 'PUT';
  path: string;
  query?: Record<string, string | undefined>;
  body?: string;
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
}

/** Kubernetes' Status object, as far as reports need it. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: Array<{ type?: string; message?: string; field?: string }> };
}

/** Answers are bounded: a paginated list or one object is far below this. */
const maxBodyBytes = 64 * 1024 * 1024;

export class KubeHttp {
  readonly server: string;
  private agent: Agent | undefined;
  private agentKey = '';

  constructor(
    private readonly kc: KubeAccess,
    private readonly timeoutMs = 15_000,
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new HawserError(ErrorCode.InvalidOption, 'kubeconfig has no current cluster');
    this.server = cluster.server;
  }

  /**
   * One request. Every request the engine makes is idempotent (GET, apply,
   * DELETE with a uid precondition), so one that fails on a kept-alive
   * connection the server had already closed is sent once more on a new one.
   */
  async request(r: KubeRequest): Promise<KubeResponse> {
    try {
      return await this.requestOnce(r);
    } catch (err) {
      if (!(err instanceof StaleSocketError)) throw err;
      return this.requestOnce(r);
    }
  }

  private async requestOnce(r: KubeRequest): Promise<KubeResponse> {
    const url = new URL(r.path, this.server);
    for (const [k, v] of Object.entries(r.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const signal = r.signal ? AbortSignal.any([deadline, r.signal]) : deadline;
    const options: RequestOptions = { method: r.method, signal, headers: { accept: r.accept ?? 'application/json' } };
    // Credentials are read per request: a token file or exec plugin may rotate them.
    await this.kc.applyToHTTPSOptions(options);
    if (!this.kc.getCurrentCluster()?.proxyUrl) options.agent = this.keepAliveAgent(options);
    if (r.body !== undefined) {
      options.headers = { ...options.headers, 'content-type': r.contentType ?? 'application/json', 'content-length': String(Buffer.byteLength(r.body)) };
    }
    const send = url.protocol === 'http:' ? httpRequest : request;
    if (url.protocol === 'http:') delete options.agent;
    const what = `${r.method} ${url.pathname}`;
    return new Promise((resolve, reject) => {
      const failed = (err: Error): HawserError => {
        if (r.signal?.aborted) return new HawserError(ErrorCode.Cancelled, `${what} on ${this.server} was cancelled`, { cause: err });
        if (deadline.aborted) return new HawserError(ErrorCode.Unavailable, `${what} on ${this.server} got no answer within ${this.timeoutMs}ms`, { cause: err });
        return new HawserError(ErrorCode.Unavailable, `${what} on ${this.server} failed: ${boundedText(err.message)}`, { cause: err });
      };
      const req = send(url, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBodyBytes) res.destroy(new Error(`answer larger than ${maxBodyBytes} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', (err) => reject(failed(err)));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && !signal.aborted;
        reject(stale ? new StaleSocketError(err.message) : failed(err));
      });
      req.end(r.body);
    });
  }

  /**
   * A long-lived GET (a watch) whose body is read line by line. It gets its
   * own connection, not one of the pool's, so watches never hold the sockets
   * applies need. Resolves when the server ends the stream; the signal ends
   * it early. Only the answer's head has a deadline.
   */
  async stream(
    r: Omit<KubeRequest, 'method' | 'body'>,
    onLine: (line: string) => void,
    onHead?: (status: number) => void,
  ): Promise<{ status: number; body: string }> {
    const url = new URL(r.path, this.server);
    for (const [k, v] of Object.entries(r.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const options: RequestOptions = { method: 'GET', headers: { accept: r.accept ?? 'application/json' }, ...(r.signal ? { signal: r.signal } : {}) };
    await this.kc.applyToHTTPSOptions(options);
    const send = url.protocol === 'http:' ? httpRequest : request;
    if (url.protocol === 'http:') delete options.agent;
    const what = `watch ${url.pathname}`;
    return new Promise((resolve, reject) => {
      const req = send(url, options, (res) => {
        clearTimeout(headTimer);
        const status = res.statusCode ?? 0;
        onHead?.(status);
        let pending = '';
        let size = 0;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (status !== 200) {
            size += chunk.length;
            if (size <= 64 * 1024) pending += chunk;
            return;
          }
          pending += chunk;
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (line.trim()) onLine(line);
          }
          if (pending.length > maxBodyBytes) res.destroy(new Error(`a watch event larger than ${maxBodyBytes} bytes`));
        });
        res.on('end', () => resolve({ status, body: status === 200 ? '' : pending }));
        res.on('error', (err) => reject(new HawserError(r.signal?.aborted ? ErrorCode.Cancelled : ErrorCode.Unavailable, `${what}: ${boundedText(err.message)}`, { cause: err })));
      });
      const headTimer = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs}ms`)), this.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(headTimer);
        reject(new HawserError(r.signal?.aborted ? ErrorCode.Cancelled : ErrorCode.Unavailable, `${what} on ${this.server}: ${boundedText(err.message)}`, { cause: err }));
      });
      req.end();
    });
  }

  /** One agent per TLS identity; a rotated client certificate or CA gets a new one. */
  private keepAliveAgent(options: RequestOptions): Agent {
    const key = [options.ca, options.cert, options.key, options.rejectUnauthorized].map(String).join('\0');
    if (!this.agent || key !== this.agentKey) {
      this.agent?.destroy();
      this.agentKey = key;
      this.agent = new Agent({
        keepAlive: true,
        maxSockets: 8,
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.cert ? { cert: options.cert } : {}),
        ...(options.key ? { key: options.key } : {}),
        ...(options.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.rejectUnauthorized }),
      });
    }
    return this.agent;
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}

/** A kept-alive connection closed by the server before our request went out. */
class StaleSocketError extends Error {}

/** The API server's Status from an error answer, or a stand-in naming the HTTP code. */
export function statusOf(res: KubeResponse): KubeStatus {
  try {
    const parsed = JSON.parse(res.body) as KubeStatus;
    if (parsed && typeof parsed === 'object' && parsed.kind === 'Status') return parsed;
  } catch {
    // not JSON: fall through
  }
  return { code: res.status, message: `HTTP ${res.status}${res.body ? `: ${res.body}` : ''}` };
}

/** The API server's message for an error answer, bounded for a report. */
export function statusMessage(res: KubeResponse, max = 1024): string {
  const s = statusOf(res);
  return boundedText(s.message ?? `HTTP ${res.status}`, max);
}

/** An error answer's code: the server's trouble (retry later) or a refusal of the request. */
export function codeForStatus(status: number): ErrorCode {
  return status >= 500 || status === 429 ? ErrorCode.Unavailable : ErrorCode.ApplyRejected;
}

export const metadataListAccept = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
