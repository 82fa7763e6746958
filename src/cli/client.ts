import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ErrorCode } from '../tunnel/index.js';
import type { HubTarget } from './config.js';

// Client commands talk to the hub's HTTP API with the operator's bearer
// token, over https with the context's CA when the hub is off loopback.

export class HubRequestError extends Error {
  override readonly name = 'HubRequestError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const timeoutMs = 15_000;

/** A request body: JSON (apply and delete send hawser's ApplyRequest). */
export interface RequestBody {
  contentType: string;
  text: string;
}

function roundTrip(target: HubTarget, method: string, path: string, body?: RequestBody): Promise<{ status: number; text: string }> {
  const url = new URL(`${target.server}${path}`);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  if (body) {
    headers['content-type'] = body.contentType;
    headers['content-length'] = String(Buffer.byteLength(body.text));
  }
  return new Promise((resolve, reject) => {
    const options = { method, headers, signal: AbortSignal.timeout(timeoutMs) };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, { ...options, ...(target.caPem ? { ca: target.caPem } : {}) })
        : httpRequest(url, options);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body?.text);
  });
}

export async function hubRequest<T>(target: HubTarget, method: 'GET' | 'POST' | 'DELETE', path: string, body?: RequestBody): Promise<T> {
  let reply: { status: number; text: string };
  try {
    reply = await roundTrip(target, method, path, body);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { errors?: Array<{ code?: string }> };
    const cause = e.code ?? e.errors?.[0]?.code ?? e.message;
    if (/CERT|SELF_SIGNED|UNABLE_TO/.test(cause)) {
      throw new HubRequestError(
        ErrorCode.UntrustedHub,
        `the hub at ${target.server} has a certificate this CLI does not trust (${cause}); pass --ca-file (the hub's <data-dir>/pki/ca-bundle.crt) or use a context with its CA`,
      );
    }
    throw new HubRequestError(ErrorCode.HubUnreachable, `cannot reach the hub at ${target.server} (${cause}); is it running? set --hub, HAWSER_HUB or a context`);
  }
  let answer: unknown;
  try {
    answer = JSON.parse(reply.text);
  } catch {
    answer = reply.text;
  }
  if (reply.status < 200 || reply.status > 299) {
    const e = answer as { code?: string; message?: string };
    const hint =
      reply.status === 401
        ? target.token
          ? ' (the token came from --token-file, HAWSER_TOKEN or the context; check it is in the hub\'s operator tokens file)'
          : ' (no token: pass --token-file, set HAWSER_TOKEN, or use a context in ~/.hawser/config)'
        : '';
    throw new HubRequestError(e.code ?? `HTTP_${reply.status}`, `${e.message ?? reply.text}${hint}`);
  }
  return answer as T;
}
