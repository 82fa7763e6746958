import { randomBytes } from 'node:crypto';
import { parse, stringify } from 'yaml';
import { dns1123LabelProblem, labelKeyProblem, labelValueProblem, quoteBounded } from '../api/index.js';
import { type ClusterInput, clusterLabels, type LabelSelector, selectorMatches, selectorProblems } from '../scheduler/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import { findBySecret, secretDigest } from './tokens.js';

// Operators log in to the hub's HTTP API with bearer tokens read from a file
// (never a flag: a command line is visible in ps). Each entry is a mapping,
// so later fields (groups, a cluster scope) are additions, not a new format:
//
//   operators:
//     - name: alice
//       role: admin          # admin: everything; viewer: reads only
//       token: hwo_...       # at least 16 characters of [A-Za-z0-9._~+/=-]
//       groups: [platform]   # optional: impersonated in edge clusters with the name
//       clusters:            # optional: the clusters reachable through the proxy (default every one)
//         names: [edge-1]    # these, and
//         selector:          # those whose labels match (metav1.LabelSelector)
//           matchLabels: { region: eu }

export const operatorRoles = ['viewer', 'admin'] as const;
export type OperatorRole = (typeof operatorRoles)[number];

/** The clusters an operator may reach through the proxy: those named, and those the selector matches. */
export interface ClusterScope {
  names?: string[];
  /** Over the cluster's labels and the built-ins clusters.clusternet.io/cluster-name and cluster-id. */
  selector?: LabelSelector;
}

/** Who a request acts as, once its token checked out. */
export interface Operator {
  name: string;
  role: OperatorRole;
  /** Groups the agent impersonates besides the name (Impersonate-Group); none when absent. */
  groups?: string[];
  /** Absent: every cluster. */
  clusters?: ClusterScope;
}

export interface OperatorTokenEntry extends Operator {
  token: string;
}

const tokenPattern = /^[A-Za-z0-9._~+/=-]{16,512}$/;
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,252}$/;
const entryKeys = ['name', 'role', 'token', 'groups', 'clusters'];
// Groups travel as HTTP header values, one a header: printable ASCII, no comma, no edge spaces.
const groupPattern = /^[!-+\--~](?:[ -+\--~]{0,251}[!-+\--~])?$/;
const maxGroups = 64;
const maxScopeNames = 1000;

export function generateOperatorToken(): string {
  return `hwo_${randomBytes(32).toString('base64url')}`;
}

function invalid(source: string, what: string): HawserError {
  return new HawserError(ErrorCode.InvalidOperatorTokens, `operator tokens file ${source}: ${what}`);
}

/** Parses and validates the file; errors name the entry and field, never a token. */
export function parseOperatorTokens(text: string, source: string): OperatorTokenEntry[] {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw invalid(source, `not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  const list = (doc as { operators?: unknown } | null)?.operators;
  if (!doc || typeof doc !== 'object' || !Array.isArray(list) || list.length === 0) {
    throw invalid(source, 'needs a non-empty "operators:" list of {name, role, token}');
  }
  const unknownTop = Object.keys(doc).filter((k) => k !== 'operators');
  if (unknownTop.length > 0) throw invalid(source, `unknown key "${unknownTop[0]}"; known: operators`);
  const seen = new Set<string>();
  return list.map((raw, i) => {
    const at = `operators[${i}]`;
    if (!raw || typeof raw !== 'object') throw invalid(source, `${at} must be a mapping with name, role and token`);
    const e = raw as Record<string, unknown>;
    const unknown = Object.keys(e).find((k) => !entryKeys.includes(k));
    if (unknown) throw invalid(source, `${at}: unknown key "${unknown}"; known: ${entryKeys.join(', ')}`);
    if (typeof e.name !== 'string' || !namePattern.test(e.name)) throw invalid(source, `${at}.name must be a user name like "alice"`);
    if (!operatorRoles.includes(e.role as OperatorRole)) throw invalid(source, `${at}.role must be one of ${operatorRoles.join(', ')}`);
    if (typeof e.token !== 'string' || !tokenPattern.test(e.token)) {
      throw invalid(source, `${at}.token (user "${e.name}") must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -`);
    }
    if (seen.has(e.token)) throw invalid(source, `${at}.token (user "${e.name}") is used by an earlier entry too`);
    seen.add(e.token);
    const who = `${at} (user "${e.name}")`;
    const groups = e.groups === undefined ? undefined : parseGroups(e.groups, `${who}.groups`, source);
    const clusters = e.clusters === undefined ? undefined : parseScope(e.clusters, `${who}.clusters`, source);
    return { name: e.name, role: e.role as OperatorRole, token: e.token, ...(groups ? { groups } : {}), ...(clusters ? { clusters } : {}) };
  });
}

function parseGroups(raw: unknown, at: string, source: string): string[] {
  if (!Array.isArray(raw) || raw.length > maxGroups) throw invalid(source, `${at} must be a list of at most ${maxGroups} group names`);
  const groups: string[] = [];
  for (const [i, g] of raw.entries()) {
    if (typeof g !== 'string' || !groupPattern.test(g)) {
      throw invalid(source, `${at}[${i}] ${quoteBounded(g)} must be 1 to 253 printable ASCII characters without a comma or spaces at either end`);
    }
    if (groups.includes(g)) throw invalid(source, `${at}[${i}] "${g}" is listed twice`);
    groups.push(g);
  }
  return groups;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownKey(v: Record<string, unknown>, known: readonly string[]): string | undefined {
  return Object.keys(v).find((k) => !known.includes(k));
}

function parseScope(raw: unknown, at: string, source: string): ClusterScope {
  if (!isMapping(raw)) throw invalid(source, `${at} must be a mapping with names (a list of cluster names) and/or selector (a label selector)`);
  const unknown = unknownKey(raw, ['names', 'selector']);
  if (unknown) throw invalid(source, `${at}: unknown key "${unknown}"; known: names, selector`);
  if (raw.names === undefined && raw.selector === undefined) {
    throw invalid(source, `${at} needs names and/or selector (leave clusters out for every cluster)`);
  }
  const scope: ClusterScope = {};
  if (raw.names !== undefined) {
    if (!Array.isArray(raw.names) || raw.names.length > maxScopeNames) throw invalid(source, `${at}.names must be a list of at most ${maxScopeNames} cluster names`);
    scope.names = raw.names.map((n: unknown, i) => {
      const problem = typeof n === 'string' ? dns1123LabelProblem(n) : 'must be a string';
      if (problem) throw invalid(source, `${at}.names[${i}] ${quoteBounded(n)} ${problem}`);
      return n as string;
    });
  }
  if (raw.selector !== undefined) scope.selector = parseSelector(raw.selector, `${at}.selector`, source);
  return scope;
}

function parseSelector(raw: unknown, at: string, source: string): LabelSelector {
  if (!isMapping(raw)) throw invalid(source, `${at} must be a label selector mapping (matchLabels, matchExpressions)`);
  const unknown = unknownKey(raw, ['matchLabels', 'matchExpressions']);
  if (unknown) throw invalid(source, `${at}: unknown key "${unknown}"; known: matchLabels, matchExpressions`);
  const selector: { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> } = {};
  if (raw.matchLabels !== undefined) {
    if (!isMapping(raw.matchLabels)) throw invalid(source, `${at}.matchLabels must be a mapping of label key to value`);
    selector.matchLabels = {};
    for (const [k, v] of Object.entries(raw.matchLabels)) {
      if (typeof v !== 'string') throw invalid(source, `${at}.matchLabels.${k} must be a string value`);
      const keyProblem = labelKeyProblem(k);
      if (keyProblem) throw invalid(source, `${at}.matchLabels: key ${quoteBounded(k)}: ${keyProblem}`);
      const valueProblem = labelValueProblem(v);
      if (valueProblem) throw invalid(source, `${at}.matchLabels: value ${quoteBounded(v)} of ${quoteBounded(k)}: ${valueProblem}`);
      selector.matchLabels[k] = v;
    }
  }
  if (raw.matchExpressions !== undefined) {
    if (!Array.isArray(raw.matchExpressions)) throw invalid(source, `${at}.matchExpressions must be a list of {key, operator, values}`);
    selector.matchExpressions = raw.matchExpressions.map((req: unknown, i) => {
      const f = `${at}.matchExpressions[${i}]`;
      if (!isMapping(req)) throw invalid(source, `${f} must be a mapping {key, operator, values}`);
      const extra = unknownKey(req, ['key', 'operator', 'values']);
      if (extra) throw invalid(source, `${f}: unknown key "${extra}"; known: key, operator, values`);
      const keyProblem = typeof req.key === 'string' ? labelKeyProblem(req.key) : 'is required';
      if (keyProblem) throw invalid(source, `${f}.key ${keyProblem}`);
      if (req.values !== undefined && (!Array.isArray(req.values) || !req.values.every((v) => typeof v === 'string'))) {
        throw invalid(source, `${f}.values must be a list of strings`);
      }
      return { key: req.key as string, operator: String(req.operator), ...(req.values !== undefined ? { values: req.values as string[] } : {}) };
    });
  }
  const [problem] = selectorProblems(selector, at);
  if (problem) throw invalid(source, problem);
  return selector;
}

function describeScope(scope: ClusterScope): string {
  const parts: string[] = [];
  if (scope.names) parts.push(`names: ${scope.names.length === 0 ? 'none' : scope.names.slice(0, 5).join(', ') + (scope.names.length > 5 ? `, and ${scope.names.length - 5} more` : '')}`);
  if (scope.selector) parts.push(`selector: ${boundedSelector(scope.selector)}`);
  return parts.join('; ');
}

function boundedSelector(selector: LabelSelector): string {
  const terms = [
    ...Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(selector.matchExpressions ?? []).map((r) => `${r.key} ${r.operator}${r.values?.length ? ` (${r.values.join(', ')})` : ''}`),
  ];
  const text = terms.length === 0 ? 'everything' : terms.join(', ');
  return text.length <= 160 ? text : `${text.slice(0, 160)}...`;
}

/**
 * Whether the operator may reach this cluster through the proxy: undefined when it may, else the
 * 403 (HAWSER_CLUSTER_OUT_OF_SCOPE) naming operator, cluster and why. `cluster` is the
 * ManagedCluster the request names, undefined when there is none: a scoped operator then gets
 * the same 403 (its scope reveals no cluster names); an unscoped one is left to the caller's 404.
 */
export function proxyScopeError(operator: Operator, clusterName: string, cluster: ClusterInput | undefined): HawserError | undefined {
  const scope = operator.clusters;
  if (!scope) return undefined;
  const named = cluster !== undefined && (scope.names ?? []).includes(cluster.metadata.name);
  const selected = cluster !== undefined && scope.selector !== undefined && selectorMatches(scope.selector, clusterLabels(cluster));
  if (named || selected) return undefined;
  const shown = clusterName.length <= 63 ? `"${clusterName}"` : quoteBounded(clusterName, 63);
  const why = [
    ...(scope.names ? ['it is not one of its clusters by name'] : []),
    ...(scope.selector ? [cluster ? 'its labels do not match its selector' : 'no such cluster matches its selector'] : []),
  ].join(' and ');
  return new HawserError(
    ErrorCode.ClusterOutOfScope,
    `user "${operator.name}" may not reach cluster ${shown} through the hub: ${why} (${describeScope(scope)}); the hub's operator tokens file sets each operator's clusters`,
  );
}

export function renderOperatorTokens(entries: readonly OperatorTokenEntry[]): string {
  return `# hawser operator tokens (keep this file mode 0600). Roles: admin, viewer.\n${stringify({ operators: entries })}`;
}

export function roleAllows(have: OperatorRole, need: OperatorRole): boolean {
  return operatorRoles.indexOf(have) >= operatorRoles.indexOf(need);
}

/** Finds the operator a bearer token belongs to, comparing in constant time. */
export class OperatorAuthenticator {
  private readonly entries: Array<{ digest: Buffer; value: Operator }>;

  constructor(entries: readonly OperatorTokenEntry[]) {
    this.entries = entries.map(({ token, ...operator }) => ({ digest: secretDigest(token), value: operator }));
  }

  /** The operator for an `Authorization: Bearer TOKEN` header; undefined for anything else. */
  authenticate(authorization: string | undefined): Operator | undefined {
    const m = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    if (!m) return undefined;
    return findBySecret(m[1]!, this.entries);
  }
}
