import { describe, expect, it } from 'vitest';
import { OperatorAuthenticator, parseOperatorTokens, proxyScopeError, renderOperatorTokens } from '../../src/hub/auth.js';
import { authorizeProxyScope, clientImpersonationRefusal, findProxyCluster } from '../../src/hub/proxy-auth.js';
import { ErrorCode } from '../../src/tunnel/index.js';

// Operators' groups and cluster scopes (issue 8 §2): who may reach which cluster through the proxy.

const alice = 'hwo_alice-0123456789abcdef';
const bob = 'hwo_bob-0123456789abcdefgh';
const carol = 'hwo_carol-0123456789abcdef';

const file = `operators:
  - name: alice
    role: admin
    token: ${alice}
    groups: [platform, "oidc:sre"]
  - name: bob
    role: viewer
    token: ${bob}
    groups: [team-a]
    clusters:
      names: [edge-1]
  - name: carol
    role: viewer
    token: ${carol}
    clusters:
      names: [lab]
      selector:
        matchLabels: { region: eu }
        matchExpressions:
          - { key: tier, operator: NotIn, values: [prod] }
`;

function cluster(name: string, labels: Record<string, string> = {}) {
  return { metadata: { name, labels }, spec: { clusterId: '7e0a5b5a-0000-4000-8000-000000000001' } };
}

function refusal(text: string): Error & { code?: string } {
  try {
    parseOperatorTokens(text, '/etc/hawser/operators');
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the file to be refused');
}

describe('operator groups and cluster scope', () => {
  it('parses groups and scopes; an entry without them is as before (every cluster, no groups)', () => {
    const [a, b, c] = parseOperatorTokens(file, 'f');
    expect(a).toEqual({ name: 'alice', role: 'admin', token: alice, groups: ['platform', 'oidc:sre'] });
    expect(b).toEqual({ name: 'bob', role: 'viewer', token: bob, groups: ['team-a'], clusters: { names: ['edge-1'] } });
    expect(c!.clusters).toEqual({ names: ['lab'], selector: { matchLabels: { region: 'eu' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['prod'] }] } });
    expect(parseOperatorTokens(`operators: [{ name: x, role: admin, token: ${alice} }]`, 'f')).toEqual([{ name: 'x', role: 'admin', token: alice }]);
  });

  it('round-trips what it renders', () => {
    const entries = parseOperatorTokens(file, 'f');
    expect(parseOperatorTokens(renderOperatorTokens(entries), 'f')).toEqual(entries);
  });

  it('the authenticated operator carries its groups and scope, never its token', () => {
    const auth = new OperatorAuthenticator(parseOperatorTokens(file, 'f'));
    const b = auth.authenticate(`Bearer ${bob}`);
    expect(b).toEqual({ name: 'bob', role: 'viewer', groups: ['team-a'], clusters: { names: ['edge-1'] } });
    expect(JSON.stringify(b)).not.toContain(bob);
  });

  it.each([
    ['groups not a list', 'groups: team-a', '.groups'],
    ['an empty group', 'groups: [""]', '.groups[0]'],
    ['a group with a comma', 'groups: ["a,b"]', '.groups[0]'],
    ['a group with a newline', 'groups: ["a\\nb"]', '.groups[0]'],
    ['a repeated group', 'groups: [a, a]', '.groups[1]'],
    ['clusters not a mapping', 'clusters: [edge-1]', '.clusters'],
    ['clusters with neither names nor selector', 'clusters: {}', '.clusters'],
    ['an unknown clusters key', 'clusters: { name: [edge-1] }', '.clusters: unknown key "name"'],
    ['names not a list', 'clusters: { names: edge-1 }', '.clusters.names'],
    ['a cluster name that is not a DNS label', 'clusters: { names: [Edge_1] }', '.clusters.names[0]'],
    ['a selector that is not a mapping', 'clusters: { selector: "region=eu" }', '.clusters.selector'],
    ['an unknown selector key', 'clusters: { selector: { matchLabel: { a: b } } }', '.clusters.selector: unknown key "matchLabel"'],
    ['a bad label key', 'clusters: { selector: { matchLabels: { "a b": x } } }', '.clusters.selector.matchLabels'],
    ['a bad label value', 'clusters: { selector: { matchLabels: { a: "x y" } } }', '.clusters.selector.matchLabels'],
    ['a non-string label value', 'clusters: { selector: { matchLabels: { a: [x] } } }', '.clusters.selector.matchLabels.a'],
    ['an unknown operator', 'clusters: { selector: { matchExpressions: [{ key: a, operator: Gt, values: ["1"] }] } }', '.clusters.selector.matchExpressions[0].operator'],
    ['In without values', 'clusters: { selector: { matchExpressions: [{ key: a, operator: In }] } }', '.clusters.selector.matchExpressions[0].values'],
    ['an expression without a key', 'clusters: { selector: { matchExpressions: [{ operator: Exists }] } }', '.clusters.selector.matchExpressions[0].key'],
    ['an expression with an unknown key', 'clusters: { selector: { matchExpressions: [{ key: a, operator: Exists, value: x }] } }', '.clusters.selector.matchExpressions[0]: unknown key "value"'],
    ['non-string values', 'clusters: { selector: { matchExpressions: [{ key: a, operator: In, values: [1] }] } }', '.clusters.selector.matchExpressions[0].values'],
  ])('refuses %s at start, naming the entry and field but never the token', (_, extra, field) => {
    const err = refusal(`operators:\n  - name: dave\n    role: viewer\n    token: ${alice}\n    ${extra}\n`);
    expect(err.code).toBe(ErrorCode.InvalidOperatorTokens);
    expect(err.message).toContain('/etc/hawser/operators');
    expect(err.message).toContain(field);
    expect(err.message).toContain('operators[0] (user "dave")');
    expect(err.message).not.toContain(alice);
  });
});

describe('proxy scope', () => {
  const [alice_, bob_, carol_] = parseOperatorTokens(file, 'f').map(({ token: _token, ...operator }) => operator);

  it('an operator without a scope reaches every cluster', () => {
    expect(proxyScopeError(alice_!, 'edge-2', cluster('edge-2'))).toBeUndefined();
  });

  it('a scope by names admits those clusters only', () => {
    expect(proxyScopeError(bob_!, 'edge-1', cluster('edge-1'))).toBeUndefined();
    const err = proxyScopeError(bob_!, 'edge-2', cluster('edge-2', { region: 'eu' }));
    expect(err?.code).toBe(ErrorCode.ClusterOutOfScope);
    expect(err?.message).toContain('"bob"');
    expect(err?.message).toContain('"edge-2"');
    expect(err?.message).toContain('edge-1');
  });

  it('a scope by names and selector admits a cluster that either admits', () => {
    expect(proxyScopeError(carol_!, 'lab', cluster('lab', { tier: 'prod' }))).toBeUndefined();
    expect(proxyScopeError(carol_!, 'edge-9', cluster('edge-9', { region: 'eu', tier: 'edge' }))).toBeUndefined();
    expect(proxyScopeError(carol_!, 'edge-9', cluster('edge-9', { region: 'eu', tier: 'prod' }))?.code).toBe(ErrorCode.ClusterOutOfScope);
    const err = proxyScopeError(carol_!, 'edge-8', cluster('edge-8', { region: 'us' }));
    expect(err?.code).toBe(ErrorCode.ClusterOutOfScope);
    expect(err?.message).toContain('its labels do not match');
  });

  it("a selector sees the built-in cluster-name and cluster-id labels, and the cluster's own labels cannot fake them", () => {
    const scoped = { name: 'eve', role: 'viewer' as const, clusters: { selector: { matchLabels: { 'clusters.clusternet.io/cluster-name': 'edge-1' } } } };
    expect(proxyScopeError(scoped, 'edge-1', cluster('edge-1'))).toBeUndefined();
    expect(proxyScopeError(scoped, 'edge-2', cluster('edge-2', { 'clusters.clusternet.io/cluster-name': 'edge-1' }))?.code).toBe(ErrorCode.ClusterOutOfScope);
  });

  it('a cluster that does not exist is refused to a scoped operator (403, not 404: a scope reveals no names), and left to the caller otherwise', () => {
    expect(proxyScopeError(bob_!, 'ghost', undefined)?.code).toBe(ErrorCode.ClusterOutOfScope);
    expect(proxyScopeError(carol_!, 'ghost', undefined)?.code).toBe(ErrorCode.ClusterOutOfScope);
    expect(proxyScopeError(alice_!, 'ghost', undefined)).toBeUndefined();
  });

  it('a name in the URL is quoted bounded in the message', () => {
    const err = proxyScopeError(bob_!, 'x'.repeat(500), undefined);
    expect(err!.message.length).toBeLessThan(400);
  });
});

describe('proxy scope on the hub: the cluster a path names', () => {
  const edge1 = { metadata: { name: 'edge-1', labels: { region: 'eu' } }, spec: { clusterId: '7e0a5b5a-0000-4000-8000-000000000001' } };
  let lookups = 0;
  // A fake of the store's two reads: the lookup logic is what is under test.
  const store = {
    get: async (_kind: 'ManagedCluster', name: string) => (lookups++, name === 'edge-1' ? edge1 : undefined),
    list: async () => (lookups++, { items: [{ object: edge1 }] }),
  } as unknown as Parameters<typeof authorizeProxyScope>[0];

  it('finds a cluster by name or by cluster id (Clusternet socket paths)', async () => {
    expect((await findProxyCluster(store, 'edge-1'))?.metadata.name).toBe('edge-1');
    expect((await findProxyCluster(store, edge1.spec.clusterId))?.metadata.name).toBe('edge-1');
    expect(await findProxyCluster(store, 'nope')).toBeUndefined();
  });

  it('checks the scope against the cluster found, by name or id; an unscoped operator costs no lookup', async () => {
    const eu = { name: 'eu-op', role: 'viewer' as const, clusters: { selector: { matchLabels: { region: 'eu' } } } };
    const us = { name: 'us-op', role: 'viewer' as const, clusters: { selector: { matchLabels: { region: 'us' } } } };
    expect(await authorizeProxyScope(store, eu, 'edge-1')).toBeUndefined();
    expect(await authorizeProxyScope(store, eu, edge1.spec.clusterId)).toBeUndefined();
    expect((await authorizeProxyScope(store, us, edge1.spec.clusterId))?.code).toBe(ErrorCode.ClusterOutOfScope);
    lookups = 0;
    expect(await authorizeProxyScope(store, { name: 'root', role: 'admin' }, 'edge-1')).toBeUndefined();
    expect(lookups).toBe(0);
  });
});

describe('a request that impersonates by itself', () => {
  it("a request carrying its own Impersonate-* headers (kubectl --as) is refused, not passed on or dropped", () => {
    expect(clientImpersonationRefusal(['accept', 'authorization', 'user-agent'])).toBeUndefined();
    for (const header of ['Impersonate-User', 'impersonate-group', 'Impersonate-Uid', 'impersonate-extra-scopes']) {
      const err = clientImpersonationRefusal(['accept', header]);
      expect(err?.code).toBe(ErrorCode.ImpersonationRefused);
      expect(err?.message).toContain(header.toLowerCase());
    }
  });
});
