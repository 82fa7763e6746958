import type { ManagedCluster } from '../api/index.js';
import { quoteBounded } from '../api/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import { type Operator, proxyScopeError } from './auth.js';
import type { HubStore } from './store.js';

// The hub's half of "who may do what" through the proxy: the operator's
// cluster scope (auth.ts). The agent's half is its impersonation policy
// (src/agent/impersonation-policy.ts); the child's RBAC has the last word.

/** The ManagedCluster a proxy path names: by name (/clusters/NAME) or by cluster id (Clusternet's sockets/ID). */
export async function findProxyCluster(store: Pick<HubStore, 'get' | 'list'>, ref: string): Promise<ManagedCluster | undefined> {
  const byName = await store.get('ManagedCluster', ref);
  if (byName) return byName;
  return (await store.list('ManagedCluster')).items.map((e) => e.object).find((c) => c.spec.clusterId === ref);
}

/**
 * Undefined when the operator may reach the cluster `ref` names; else the 403
 * (HAWSER_CLUSTER_OUT_OF_SCOPE). An operator without a scope costs no lookup.
 */
export async function authorizeProxyScope(store: Pick<HubStore, 'get' | 'list'>, operator: Operator, ref: string): Promise<HawserError | undefined> {
  if (!operator.clusters) return undefined;
  return proxyScopeError(operator, ref, await findProxyCluster(store, ref));
}

/**
 * A request that asks to impersonate by itself (kubectl --as, --as-group) is refused: the
 * agent's credential must not lend its impersonation rights, and dropping the headers would
 * run the request as someone the user did not ask for.
 */
export function clientImpersonationRefusal(headerNames: Iterable<string>): HawserError | undefined {
  for (const name of headerNames) {
    const lower = name.toLowerCase();
    if (lower.startsWith('impersonate-')) {
      return new HawserError(
        ErrorCode.ImpersonationRefused,
        `the request carries ${quoteBounded(lower, 64)}: impersonation (kubectl --as) is not available through the hub; the cluster sees you as your hub operator`,
      );
    }
  }
  return undefined;
}
