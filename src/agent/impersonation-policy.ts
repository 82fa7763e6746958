import { quoteBounded } from '../api/core.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// Whom the agent may impersonate in its own cluster when it forwards an
// operator's request (Impersonate-User / Impersonate-Group, with the agent's
// own credential, so the cluster's RBAC decides). The cluster admin narrows it
// with --proxy-impersonate-users and --proxy-impersonate-groups: exact names and
// `*` wildcards. A `system:` name (system:masters, system:admin, ...) is never
// matched by a wildcard: it passes only when listed exactly.

/** The operator as the hub names it: its user name and groups. */
export interface ProxyIdentity {
  user: string;
  groups: readonly string[];
}

export interface ImpersonationPolicy {
  /** Patterns for users; empty: nobody, so every proxied request is refused. */
  users: readonly string[];
  /** Patterns for groups; empty: no group (an operator with groups is refused). */
  groups: readonly string[];
}

export const userPatternsFlag = '--proxy-impersonate-users';
export const groupPatternsFlag = '--proxy-impersonate-groups';

export function defaultImpersonationPolicy(): ImpersonationPolicy {
  return { users: ['*'], groups: ['*'] };
}

const systemPrefix = 'system:';
const printable = /^[ -~]+$/;

/** "a, team-*" as the flags take it; errors name the flag and the entry. */
export function parseImpersonationPatterns(text: string, flag: string): string[] {
  if (text.trim() === '') return [];
  return text.split(',').map((raw, i) => {
    const pattern = raw.trim();
    if (pattern === '' || !printable.test(pattern) || pattern.length > 253) {
      throw new HawserError(ErrorCode.InvalidOption, `${flag}: entry ${i + 1} ${quoteBounded(raw, 64)} must be a name or a pattern with *, 1 to 253 printable characters`);
    }
    if (pattern.startsWith(systemPrefix) && pattern.includes('*')) {
      throw new HawserError(
        ErrorCode.InvalidOption,
        `${flag}: ${quoteBounded(pattern, 64)}: system: names are never matched by a wildcard; list each one you mean exactly (e.g. system:masters)`,
      );
    }
    return pattern;
  });
}

function matches(pattern: string, name: string): boolean {
  if (!pattern.includes('*')) return pattern === name;
  if (name.startsWith(systemPrefix)) return false;
  const parts = pattern.split('*');
  const first = parts.shift()!;
  const last = parts.pop()!;
  if (!name.startsWith(first) || name.length < first.length + last.length || !name.endsWith(last)) return false;
  let at = first.length;
  const end = name.length - last.length;
  for (const part of parts) {
    const found = name.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

function refusal(kind: 'user' | 'group', name: string, patterns: readonly string[], flag: string): HawserError {
  const shown = quoteBounded(name, 253);
  const why = name.startsWith(systemPrefix)
    ? `system: ${kind}s are impersonated only when ${flag} lists the exact name`
    : patterns.length === 0
      ? `${flag} is empty`
      : `it does not match ${flag} (${patterns.slice(0, 8).join(', ')}${patterns.length > 8 ? ', ...' : ''})`;
  return new HawserError(ErrorCode.ImpersonationRefused, `this cluster's agent will not impersonate ${kind} ${shown}: ${why}`);
}

/** Undefined when the agent may impersonate the user and every group; else the 403 naming the first refused. */
export function impersonationRefusal(policy: ImpersonationPolicy, identity: ProxyIdentity): HawserError | undefined {
  if (!policy.users.some((p) => matches(p, identity.user))) return refusal('user', identity.user, policy.users, userPatternsFlag);
  for (const group of identity.groups) {
    if (!policy.groups.some((p) => matches(p, group))) return refusal('group', group, policy.groups, groupPatternsFlag);
  }
  return undefined;
}
