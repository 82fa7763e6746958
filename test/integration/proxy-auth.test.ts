import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveContext } from '../../src/cli/config.js';
import { type KubeCluster, kubectl } from '../../src/testkit/index.js';
import { hawser, type HubProcess, operatorTokensYaml, readyStatus, tempDir, TestBed, until } from './harness.js';

// Who may do what through the hub (issue 8 §1-2), through the real CLI.

const operatorToken = 'hwo_kubeconfig-0123456789abcdef';
const caPem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

interface Kubeconfig {
  clusters: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string } }>;
  users: Array<{ name: string; user: { token: string } }>;
  contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
  'current-context': string;
}

describe('hawser kubeconfig', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let config: string;
  // The CLI config only: no token in the environment, as beside a running demo.
  const cli = () => ({ HAWSER_CONFIG: config, HAWSER_TOKEN: undefined, HAWSER_HUB: undefined });

  beforeAll(async () => {
    dir = await tempDir('kubeconfig');
    config = join(dir.path, 'home', '.hawser', 'config');
    const caData = Buffer.from(caPem).toString('base64');
    await saveContext(config, { name: 'demo', server: 'https://127.0.0.1:7101', token: operatorToken, 'certificate-authority-data': caData }, true);
    await saveContext(config, { name: 'remote', server: 'https://hub.example.com:7101', token: operatorToken, 'certificate-authority-data': caData }, false);
    await saveContext(config, { name: 'plain', server: 'http://127.0.0.1:7101', token: operatorToken }, false);
  });

  afterAll(() => dir?.remove());

  it('prints a kubeconfig whose server is the hub, with the token from the current context and no flag', async () => {
    const r = await hawser(['kubeconfig', 'edge-1'], cli());
    expect(r.code).toBe(0);
    const kc = parse(r.stdout) as Kubeconfig;
    expect(kc.clusters).toEqual([{ name: 'edge-1', cluster: { server: 'https://127.0.0.1:7101/clusters/edge-1', 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }]);
    expect(kc.users).toEqual([{ name: 'hawser', user: { token: operatorToken } }]);
    expect(kc.contexts).toEqual([{ name: 'edge-1', context: { cluster: 'edge-1', user: 'hawser' } }]);
    expect(kc['current-context']).toBe('edge-1');
    expect(r.stderr).not.toContain(operatorToken);
  });

  it("carries the hub's CA for an https hub, and --user names the user entry", async () => {
    const r = await hawser(['kubeconfig', 'edge-2', '--context=remote', '--user=alice'], cli());
    expect(r.code).toBe(0);
    const kc = parse(r.stdout) as Kubeconfig;
    expect(kc.clusters[0]!.cluster.server).toBe('https://hub.example.com:7101/clusters/edge-2');
    expect(Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data']!, 'base64').toString()).toBe(caPem);
    expect(kc.users).toEqual([{ name: 'alice', user: { token: operatorToken } }]);
    expect(kc.contexts[0]!.context.user).toBe('alice');
  });

  it('--output writes the file 0600 and says where, never the token', async () => {
    const out = join(dir.path, 'edge-1.kubeconfig');
    const r = await hawser(['kubeconfig', 'edge-1', `--output=${out}`], cli());
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(out);
    expect(r.stderr).not.toContain(operatorToken);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect((parse(await readFile(out, 'utf8')) as Kubeconfig).users[0]!.user.token).toBe(operatorToken);
  });

  it('help says the output holds a token and how to keep it private', async () => {
    const r = await hawser(['kubeconfig', '--help'], cli());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('0600');
    expect(r.stdout).toContain('umask 077');
  });

  it('without a token anywhere it fails, saying where a token comes from', async () => {
    const empty = join(dir.path, 'empty', 'config');
    await mkdir(join(dir.path, 'empty'), { recursive: true });
    const r = await hawser(['kubeconfig', 'edge-1', '--hub=https://127.0.0.1:7101'], { HAWSER_CONFIG: empty, HAWSER_TOKEN: undefined });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_INVALID_OPTION');
    expect(r.stderr).toContain('--token-file');
    expect(r.stdout).toBe('');
  });

  it('refuses a plain-HTTP hub, whose kubeconfig kubectl could never log in with (it sends tokens only over HTTPS)', async () => {
    const r = await hawser(['kubeconfig', 'edge-1', '--context=plain'], cli());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_INVALID_OPTION');
    expect(r.stderr).toContain('--api-tls');
    expect(r.stdout).toBe('');
  });

  it('a cluster name that cannot be one, or a missing one, is a usage error', async () => {
    for (const args of [['kubeconfig'], ['kubeconfig', 'Edge_1'], ['kubeconfig', 'a', 'b'], ['kubeconfig', 'edge-1', '--user=']]) {
      const r = await hawser(args, cli());
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stdout).toBe('');
    }
  });
});

describe('start-up refusals', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    dir = await tempDir('proxy-auth-start');
  });
  afterAll(() => dir?.remove());

  it('a hub whose operator tokens file has an invalid scope refuses to start, naming the entry and field, never the token', async () => {
    const file = join(dir.path, 'operators');
    await writeFile(
      file,
      `operators:\n  - { name: alice, role: admin, token: ${operatorToken} }\n  - { name: bob, role: viewer, token: hwo_bob-0123456789abcdef, clusters: { selector: { matchExpressions: [{ key: region, operator: Equals, values: [eu] }] } } }\n`,
      { mode: 0o600 },
    );
    const r = await hawser(['hub', `--data-dir=${join(dir.path, 'hub')}`, `--operator-tokens-file=${file}`, '--listen=127.0.0.1:0', '--api-address=127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_INVALID_OPERATOR_TOKENS');
    expect(r.stderr).toContain('operators[1] (user "bob").clusters.selector.matchExpressions[0].operator');
    expect(r.stderr).not.toContain('hwo_bob-0123456789abcdef');
    expect(r.stderr).not.toContain(operatorToken);
  });

  it('an agent refuses a wildcard over system: names at start, naming the flag', async () => {
    const r = await hawser(['agent', '--cluster-reg-name=edge-1', `--cache-dir=${join(dir.path, 'agent')}`, '--proxy-impersonate-groups=team-*,system:*']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_INVALID_OPTION');
    expect(r.stderr).toContain('--proxy-impersonate-groups');
    expect(r.stderr).toContain('system:*');
  });
});

// Two edge clusters behind one hub, four operators:
//   alice   scoped to edge-a by name; RBAC in edge-a lets user alice list namespaces
//   bob     every cluster, group team-a; no RBAC for him anywhere (the child's own 403)
//   carol   scoped by selector region=eu (edge-b), group team-b, which edge-b's RBAC admits
//   mallory every cluster, group system:masters; only edge-b's agent lists it exactly
const tokens = {
  alice: 'hwo_alice-proxy-0123456789abcdef',
  bob: 'hwo_bob-proxy-0123456789abcdefgh',
  carol: 'hwo_carol-proxy-0123456789abcdef',
  mallory: 'hwo_mallory-proxy-0123456789abcd',
};
const scopedOperators = `${operatorTokensYaml}  - { name: alice, role: viewer, token: ${tokens.alice}, clusters: { names: [edge-a] } }
  - { name: bob, role: viewer, token: ${tokens.bob}, groups: [team-a] }
  - { name: carol, role: viewer, token: ${tokens.carol}, groups: [team-b], clusters: { selector: { matchLabels: { region: eu } } } }
  - { name: mallory, role: admin, token: ${tokens.mallory}, groups: [system:masters] }
`;

const nsReader = (binding: string, subject: string) => `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: ns-reader }
rules: [{ apiGroups: [""], resources: [namespaces], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: ${binding} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ns-reader }
subjects: [${subject}]
`;

describe('kubectl through the hub: who may do what', () => {
  let bed: TestBed;
  let hub: HubProcess;
  let edgeA: KubeCluster;
  let edgeB: KubeCluster;

  /** `hawser kubeconfig CLUSTER` for an operator (its token from the environment, as a user would have it), used unmodified. */
  async function kubeconfigFor(operator: keyof typeof tokens | 'nobody', cluster: string): Promise<{ kubeconfigPath: string; workDir: string }> {
    const token = operator === 'nobody' ? 'hwo_nobody-0123456789abcdefgh' : tokens[operator];
    const kubeconfigPath = join(bed.dir, `${operator}-${cluster}.kubeconfig`);
    // An https hub (--api-tls): the kubeconfig carries its CA.
    const r = await hawser(['kubeconfig', cluster, `--hub=${hub.apiUrl}`, `--ca-file=${hub.caFile}`, `--user=${operator}`, `--output=${kubeconfigPath}`], { HAWSER_TOKEN: token });
    expect(r.code).toBe(0);
    return { kubeconfigPath, workDir: join(bed.dir, `kubectl-${operator}`) };
  }

  /** kubectl's stderr when it fails; the test fails if it succeeds. */
  async function kubectlError(as: { kubeconfigPath: string; workDir: string }, args: string[]): Promise<string> {
    const err = await kubectl(as, args).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err, `kubectl ${args.join(' ')} should fail`).toBeInstanceOf(Error);
    return err!.message;
  }

  beforeAll(async () => {
    bed = await TestBed.create('proxy-auth');
    [edgeA, edgeB] = await Promise.all([bed.kube('edge-a'), bed.kube('edge-b')]);
    const operatorsFile = join(bed.dir, 'scoped-operators');
    await writeFile(operatorsFile, scopedOperators, { mode: 0o600 });
    hub = await bed.hub(['--auto-approve', '--api-tls', `--operator-tokens-file=${operatorsFile}`]);
    await bed.agent('edge-a', hub, edgeA, ['--cluster-labels=region=us', '--cluster-status-update-frequency=1s']);
    await bed.agent('edge-b', hub, edgeB, ['--cluster-labels=region=eu', '--cluster-status-update-frequency=1s', '--proxy-impersonate-groups=*,system:masters']);
    await until('edge-a and edge-b ready', async () => readyStatus(await hub.cluster('edge-a')) === 'True' && readyStatus(await hub.cluster('edge-b')) === 'True', 120_000);
    await kubectl(edgeA, ['apply', '-f', '-'], { input: nsReader('alice-ns-reader', '{ kind: User, name: alice, apiGroup: rbac.authorization.k8s.io }') });
    await kubectl(edgeB, ['apply', '-f', '-'], { input: nsReader('team-b-ns-reader', '{ kind: Group, name: team-b, apiGroup: rbac.authorization.k8s.io }') });
  }, 300_000);

  afterAll(() => bed?.close());

  it('`hawser kubeconfig` output works with kubectl unmodified, and the child sees the operator (its RBAC admits alice)', async () => {
    const alice = await kubeconfigFor('alice', 'edge-a');
    const { stdout } = await kubectl(alice, ['get', 'ns', '-o', 'name']);
    expect(stdout.split('\n')).toEqual(expect.arrayContaining(['namespace/default', 'namespace/kube-system']));
    // The child's own answer to "who am I": the operator, not the agent's admin credential.
    const whoami = await kubectl(alice, ['auth', 'whoami', '-o', 'json']);
    expect((JSON.parse(whoami.stdout) as { status: { userInfo: { username: string } } }).status.userInfo.username).toBe('alice');
  });

  it('an operator allowed on edge-a only gets a clear 403 on edge-b, counted by code', async () => {
    const before = await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_CLUSTER_OUT_OF_SCOPE' });
    const message = await kubectlError(await kubeconfigFor('alice', 'edge-b'), ['get', 'ns']);
    expect(message).toContain('Forbidden');
    expect(message).toContain('user "alice" may not reach cluster "edge-b"');
    expect(await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_CLUSTER_OUT_OF_SCOPE' })).toBeGreaterThan(before);

    const res = await hub.api('GET', '/clusters/edge-b/api/v1/namespaces', tokens.alice);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { kind: string; code: number; message: string };
    expect(body).toMatchObject({ kind: 'Status', code: 403, reason: 'Forbidden' });
    expect(body.message).toMatch(/^HAWSER_CLUSTER_OUT_OF_SCOPE: /);
  });

  it('a selector scope admits the clusters it matches, and the operator\'s group reaches the child (carol reads edge-b through team-b)', async () => {
    const { stdout } = await kubectl(await kubeconfigFor('carol', 'edge-b'), ['get', 'ns', '-o', 'name']);
    expect(stdout).toContain('namespace/default');
    expect(await kubectlError(await kubeconfigFor('carol', 'edge-a'), ['get', 'ns'])).toContain('user "carol" may not reach cluster "edge-a"');
    // A cluster that does not exist looks the same to a scoped operator: its scope reveals no names.
    const res = await hub.api('GET', '/clusters/no-such-cluster/api', tokens.carol);
    expect(res.status).toBe(403);
  });

  it("an operator whose impersonated user lacks RBAC in the child gets the child's own 403", async () => {
    const message = await kubectlError(await kubeconfigFor('bob', 'edge-a'), ['get', 'ns']);
    expect(message).toContain('namespaces is forbidden: User "bob" cannot list resource "namespaces"');
  });

  it('a bad token gets 401, counted', async () => {
    const before = await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_UNAUTHENTICATED' });
    const message = await kubectlError(await kubeconfigFor('nobody', 'edge-a'), ['get', 'ns']);
    expect(message).toMatch(/Unauthorized|must be logged in/);
    const res = await hub.api('GET', '/clusters/edge-a/api', 'hwo_nobody-0123456789abcdefgh');
    expect(res.status).toBe(401);
    expect(await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_UNAUTHENTICATED' })).toBeGreaterThan(before);
  });

  it('impersonating system:masters is refused, naming the group, unless the agent lists it exactly', async () => {
    const message = await kubectlError(await kubeconfigFor('mallory', 'edge-a'), ['get', 'ns']);
    expect(message).toContain('Forbidden');
    expect(message).toContain('HAWSER_IMPERSONATION_REFUSED');
    expect(message).toContain('group "system:masters"');
    const res = await hub.api('GET', '/clusters/edge-a/api/v1/namespaces', tokens.mallory);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toMatch(/^HAWSER_IMPERSONATION_REFUSED: .*group "system:masters"/);
    // edge-b's agent runs with --proxy-impersonate-groups=*,system:masters.
    const { stdout } = await kubectl(await kubeconfigFor('mallory', 'edge-b'), ['get', 'ns', '-o', 'name']);
    expect(stdout).toContain('namespace/kube-system');
  });

  it('a scoped operator lists, gets and sees in the PKI view only the clusters in its scope (names or selector)', async () => {
    const names = async (token: string) => {
      const res = await hub.api('GET', '/api/v1/clusters', token);
      expect(res.status).toBe(200);
      return ((await res.json()) as { items: Array<{ metadata: { name: string } }> }).items.map((c) => c.metadata.name).sort();
    };
    expect(await names(tokens.alice)).toEqual(['edge-a']);
    expect(await names(tokens.carol)).toEqual(['edge-b']);
    expect(await names(tokens.bob)).toEqual(['edge-a', 'edge-b']);

    expect((await hub.api('GET', '/api/v1/clusters/edge-a', tokens.alice)).status).toBe(200);
    for (const [token, name] of [[tokens.alice, 'edge-b'], [tokens.carol, 'edge-a'], [tokens.carol, 'no-such-cluster']] as const) {
      const res = await hub.api('GET', `/api/v1/clusters/${name}`, token);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('HAWSER_CLUSTER_OUT_OF_SCOPE');
    }
    expect((await hub.api('GET', '/api/v1/clusters/no-such-cluster', tokens.bob)).status).toBe(404);

    const pkiAgents = async (token: string) =>
      (((await (await hub.api('GET', '/api/v1/pki', token)).json()) as { agents: Array<{ cluster: string }> }).agents.map((a) => a.cluster).sort());
    expect(await pkiAgents(tokens.alice)).toEqual(['edge-a']);
    expect(await pkiAgents(tokens.bob)).toEqual(['edge-a', 'edge-b']);
  });

  it('kubectl --as is refused, never run as someone else nor silently as the operator', async () => {
    const message = await kubectlError(await kubeconfigFor('alice', 'edge-a'), ['get', 'ns', '--as=bob']);
    expect(message).toContain('HAWSER_IMPERSONATION_REFUSED');
    expect(message).toContain('impersonate-user');
  });
});
