import { ErrorCode, HawserError } from '../tunnel/index.js';
import { defaultImpersonationPolicy, type ImpersonationPolicy, impersonationRefusal, type ProxyIdentity } from './impersonation-policy.js';

export type { ProxyIdentity } from './impersonation-policy.js';

// The agent forwards proxied requests with its own credential and
// impersonates the operator, so the edge cluster's own RBAC decides (as
// Clusternet's "visiting with RBAC" does). This module alone turns the hub's
// word on who asks into Impersonate-* headers: which names it will accept is
// the policy here.

/**
 * The headers that make the child kube-apiserver act as `identity`. Refuses
 * (HAWSER_IMPERSONATION_REFUSED) a request naming no user, since without
 * impersonation it would run with the agent's own rights, and any user or group
 * the agent's policy (--proxy-impersonate-users, --proxy-impersonate-groups) does
 * not allow: a `system:` name such as system:masters only when listed exactly.
 * A refused group fails the request; it is never dropped.
 */
export function impersonationHeaders(identity: ProxyIdentity, policy: ImpersonationPolicy = defaultImpersonationPolicy()): Array<[string, string]> {
  if (identity.user === '') {
    throw new HawserError(ErrorCode.ImpersonationRefused, 'the proxied request names no user to impersonate: the agent does not forward it with its own rights');
  }
  const refused = impersonationRefusal(policy, identity);
  if (refused) throw refused;
  return [['Impersonate-User', identity.user], ...identity.groups.map((group): [string, string] => ['Impersonate-Group', group])];
}
