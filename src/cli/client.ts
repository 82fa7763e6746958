import { defaultHubApiAddress } from '../hub/index.js';

// How client commands find the hub: --hub, then HAWSER_HUB, then the address
// the main job uses by default.

export function hubUrl(flag: string | undefined): string {
  const raw = flag ?? process.env.HAWSER_HUB ?? `http://${defaultHubApiAddress}`;
  return /^https?:\/\//.test(raw) ? raw.replace(/\/+$/, '') : `http://${raw}`;
}

export class HubRequestError extends Error {
  override readonly name = 'HubRequestError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function hubRequest<T>(base: string, method: 'GET' | 'POST' | 'DELETE', path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    const inner = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
    const cause = inner?.code ?? inner?.errors?.[0]?.code ?? inner?.message ?? (err as Error).message;
    throw new HubRequestError('HAWSER_HUB_UNREACHABLE', `cannot reach the hub at ${base} (${cause}); is it running? set --hub or HAWSER_HUB`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  if (!res.ok) {
    const e = body as { code?: string; message?: string };
    throw new HubRequestError(e.code ?? `HTTP_${res.status}`, e.message ?? text);
  }
  return body as T;
}
