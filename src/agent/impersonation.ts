import { quoteBounded } from '../api/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// The agent forwards proxied requests with its own credential and
// impersonates the operator, so the edge cluster's own RBAC decides (as
// Clusternet's "visiting with RBAC" does). This module alone turns the hub's
// word on who asks into Impersonate-* headers: which names it will accept is
// the policy here.

/** Who the hub says the request comes from. */
export interface ProxyIdentity {
  readonly user: string;
  readonly groups: readonly string[];
}

const systemPrefix = 'system:';

/**
 * The headers that make the child kube-apiserver act as `identity`. Refuses
 * (HAWSER_IMPERSONATION_REFUSED) a request naming no user, since without
 * impersonation it would run with the agent's own rights, and any `system:`
 * user or group (such as system:masters), which would lift an operator to a
 * component's rights.
 */
export function impersonationHeaders(identity: ProxyIdentity): Array<[string, string]> {
  if (identity.user === '') {
    throw new HawserError(ErrorCode.ImpersonationRefused, 'the proxied request names no user to impersonate: the agent does not forward it with its own rights');
  }
  const system = [identity.user, ...identity.groups].find((name) => name.startsWith(systemPrefix));
  if (system !== undefined) {
    throw new HawserError(ErrorCode.ImpersonationRefused, `the agent does not impersonate ${quoteBounded(system)}: names starting with "${systemPrefix}" are refused`);
  }
  return [['Impersonate-User', identity.user], ...identity.groups.map((group): [string, string] => ['Impersonate-Group', group])];
}
