import { request } from 'node:https';
import { TestkitError, TestkitErrorCode, errorMessage } from './errors.js';

export interface HttpsRequestOptions {
  /** PEM bundle of trusted CAs (e.g. a KubeCluster's caPem). */
  ca?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One HTTPS request on its own connection (no keep-alive pool, so nothing
 * stays open to show up as a leak). `fetch` cannot take a private CA, so the
 * testkit talks to kube-apiserver with this.
 */
export function httpsRequest(url: string, options: HttpsRequestOptions = {}): Promise<HttpsResponse> {
  const method = options.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.token) headers['authorization'] = `Bearer ${options.token}`;
  if (options.body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const fail = (err: unknown): void => {
      reject(new TestkitError(TestkitErrorCode.Http, `${method} ${url} failed: ${errorMessage(err)}`, { cause: err }));
    };
    const req = request(url, {
      method,
      headers,
      agent: false,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', fail);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(options.body);
  });
}
