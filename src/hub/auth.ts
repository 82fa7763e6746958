import { randomBytes } from 'node:crypto';
import { parse, stringify } from 'yaml';
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

export const operatorRoles = ['viewer', 'admin'] as const;
export type OperatorRole = (typeof operatorRoles)[number];

/** Who a request acts as, once its token checked out. */
export interface Operator {
  name: string;
  role: OperatorRole;
}

export interface OperatorTokenEntry extends Operator {
  token: string;
}

const tokenPattern = /^[A-Za-z0-9._~+/=-]{16,512}$/;
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,252}$/;
const entryKeys = ['name', 'role', 'token'];

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
    return { name: e.name, role: e.role as OperatorRole, token: e.token };
  });
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
    this.entries = entries.map((e) => ({ digest: secretDigest(e.token), value: { name: e.name, role: e.role } }));
  }

  /** The operator for an `Authorization: Bearer TOKEN` header; undefined for anything else. */
  authenticate(authorization: string | undefined): Operator | undefined {
    const m = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    if (!m) return undefined;
    return findBySecret(m[1]!, this.entries);
  }
}
