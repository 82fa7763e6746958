import { quoteBounded } from '../api/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// Where the hub's proxy routes a request (pure):
//   /clusters/NAME/<kube path>                                        our kubeconfig's server
//   /apis/proxies.clusternet.io/v1alpha1/sockets/ID/proxy/direct/...  Clusternet: the child kube-apiserver
//   /apis/proxies.clusternet.io/v1alpha1/sockets/ID/proxy/https/HOST:PORT/...  an HTTPS service in the edge network
// ID is the cluster's id (Clusternet's) or, for convenience, its name.

export type ProxyTarget = { readonly kind: 'direct' } | { readonly kind: 'https'; readonly address: string };

export interface ProxyRoute {
  /** The cluster's name or id, as the URL names it. */
  readonly cluster: string;
  readonly target: ProxyTarget;
  /** Path and query to request from the target; starts with "/". */
  readonly path: string;
}

const clustersPrefix = '/clusters/';
const socketsPrefix = '/apis/proxies.clusternet.io/v1alpha1/sockets/';
const clusterRefPattern = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;
const hostPortPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):(\d{1,5})$/;

function decoded(raw: string, what: string): string {
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    throw new HawserError(ErrorCode.MalformedPath, `${what} ${quoteBounded(raw)} is not valid percent-encoding`);
  }
  return value;
}

function clusterRef(raw: string): string {
  const value = decoded(raw, 'cluster');
  if (!clusterRefPattern.test(value)) throw new HawserError(ErrorCode.MalformedPath, `cluster ${quoteBounded(value)} is not a cluster name or id`);
  return value;
}

/** The first segment of `rest` and what follows it ("" or "/..."). */
function firstSegment(rest: string): [string, string] {
  const slash = rest.indexOf('/');
  return slash < 0 ? [rest, ''] : [rest.slice(0, slash), rest.slice(slash)];
}

/**
 * The route of a proxied request, from its raw URL (path and query as the
 * client sent them, passed on unchanged); undefined for a URL that is no proxy
 * route. Throws HAWSER_MALFORMED_PATH for a proxy URL that names no valid
 * cluster or target.
 */
export function parseProxyPath(url: string): ProxyRoute | undefined {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q);
  const forward = (rest: string) => (rest === '' ? '/' : rest) + query;
  if (path.startsWith(clustersPrefix)) {
    const [name, rest] = firstSegment(path.slice(clustersPrefix.length));
    return { cluster: clusterRef(name), target: { kind: 'direct' }, path: forward(rest) };
  }
  if (!path.startsWith(socketsPrefix)) return undefined;
  const [id, afterId] = firstSegment(path.slice(socketsPrefix.length));
  const cluster = clusterRef(id);
  const [proxy, afterProxy] = firstSegment(afterId.slice(1));
  if (proxy !== 'proxy') {
    throw new HawserError(ErrorCode.MalformedPath, `expected .../sockets/${cluster}/proxy/direct/... or .../proxy/https/HOST:PORT/..., got ${quoteBounded(path)}`);
  }
  const [scheme, afterScheme] = firstSegment(afterProxy.slice(1));
  if (scheme === 'direct') return { cluster, target: { kind: 'direct' }, path: forward(afterScheme) };
  if (scheme === 'https') {
    const [rawAddress, rest] = firstSegment(afterScheme.slice(1));
    const address = decoded(rawAddress, 'target');
    const port = hostPortPattern.exec(address)?.[1];
    if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
      throw new HawserError(ErrorCode.MalformedPath, `proxy target ${quoteBounded(address)} is not HOST:PORT`);
    }
    return { cluster, target: { kind: 'https', address }, path: forward(rest) };
  }
  throw new HawserError(ErrorCode.MalformedPath, `proxy scheme ${quoteBounded(scheme)} is not "direct" or "https"`);
}
