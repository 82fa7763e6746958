import type { ProxyHeader } from '../gen/hawser/v1/proxy.js';

// Which headers cross the proxy. Pure: hub and agent both filter, so neither
// trusts the other's filtering for what matters to it.

/** Headers of one hop only (RFC 9110 7.6.1), never forwarded as they are. */
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** The names a Connection header lists are hop-by-hop too. */
function connectionListed(raw: readonly string[]): Set<string> {
  const listed = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const name of raw[i + 1]!.split(',')) listed.add(name.trim().toLowerCase());
  }
  listed.delete('upgrade');
  return listed;
}

function filtered(raw: readonly string[], drop: (lower: string) => boolean, upgrade: boolean): ProxyHeader[] {
  const listed = connectionListed(raw);
  const out: ProxyHeader[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (drop(lower) || listed.has(lower)) continue;
    if (hopByHop.has(lower) && !(upgrade && lower === 'upgrade')) continue;
    out.push({ name, value: raw[i + 1]! });
  }
  // An upgrade needs its own hop's Connection: Upgrade on the next hop too.
  if (upgrade && out.some((h) => h.name.toLowerCase() === 'upgrade')) out.push({ name: 'Connection', value: 'Upgrade' });
  return out;
}

/**
 * The client's request headers to send on (`raw` as Node's rawHeaders): never
 * its credential (Authorization: the operator's hub token), never Impersonate-*
 * (only the agent sets those, from who the hub authenticated), never Host
 * (the target's own) or hop-by-hop headers, except Upgrade for an upgrade.
 */
export function forwardedRequestHeaders(raw: readonly string[], upgrade: boolean): ProxyHeader[] {
  return filtered(raw, (lower) => lower === 'authorization' || lower === 'host' || lower.startsWith('impersonate-'), upgrade);
}

/** The target's response headers to send back: hop-by-hop ones dropped, except Upgrade after a 101. */
export function forwardedResponseHeaders(raw: readonly string[], upgrade: boolean): ProxyHeader[] {
  return filtered(raw, () => false, upgrade);
}

/** Is this request an HTTP/1.1 Upgrade (WebSocket, SPDY)? */
export function isUpgradeRequest(raw: readonly string[]): boolean {
  let upgrade = false;
  let connectionUpgrade = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'upgrade' && raw[i + 1]!.trim() !== '') upgrade = true;
    if (lower === 'connection' && raw[i + 1]!.split(',').some((t) => t.trim().toLowerCase() === 'upgrade')) connectionUpgrade = true;
  }
  return upgrade && connectionUpgrade;
}

/**
 * Whether a refusal the proxy answers itself goes as text rather than a
 * Kubernetes Status: on the discovery roots (/api, /apis), the first requests
 * kubectl makes, client-go reads an error body only as text (a JSON Status
 * shows as "unknown"). Everywhere else kubectl decodes and prints the Status.
 */
export function refusalAsText(path: string | undefined): boolean {
  const p = (path ?? '').split('?')[0]!.replace(/\/+$/, '');
  return p === '/api' || p === '/apis';
}
