import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, kubectl } from '../../src/testkit/index.js';
import { hawser, type HubProcess, operatorTokensYaml, readyStatus, repoRoot, startAgentProcess, TestBed, until } from './harness.js';

// deploy/agent/rbac.yaml (issue 8 §2) applied as is to a real kube-apiserver:
// with its ServiceAccount's token the agent impersonates the operators the file
// names, and the proxy works through it; it cannot impersonate system:masters.

const rbacFile = join(repoRoot, 'deploy', 'agent', 'rbac.yaml');

interface Rule {
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

describe('deploy/agent/rbac.yaml: the agent with least rights', () => {
  let bed: TestBed;
  let edge: KubeCluster;
  let hub: HubProcess;
  /** The agent's view: a kubeconfig with the ServiceAccount's token. */
  let asAgent: { kubeconfigPath: string; workDir: string };
  let user: string;
  let group: string;
  let saToken: string;
  const operatorToken = 'hwo_rbac-operator-0123456789abcdef';

  beforeAll(async () => {
    bed = await TestBed.create('proxy-rbac');
    edge = await bed.kube('edge-rbac');
    const manifest = await readFile(rbacFile, 'utf8');
    // The names the file lets the agent impersonate: the test uses what the file says.
    const roles = parseAllDocuments(manifest).map((d) => d.toJS() as { kind: string; metadata: { name: string }; rules?: Rule[] });
    const impersonate = roles.find((r) => r.kind === 'ClusterRole' && r.rules?.some((rule) => rule.verbs.includes('impersonate')))!;
    user = impersonate.rules!.find((r) => r.resources.includes('users'))!.resourceNames![0]!;
    group = impersonate.rules!.find((r) => r.resources.includes('groups'))!.resourceNames![0]!;
    await kubectl(edge, ['apply', '-f', '-'], { input: manifest });

    const { stdout: token } = await kubectl(edge, ['create', 'token', 'hawser-agent', '-n', 'hawser-system', '--duration=1h']);
    saToken = token.trim();
    const kubeconfigPath = join(bed.dir, 'agent-sa.kubeconfig');
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'edge', cluster: { server: edge.url, 'certificate-authority-data': Buffer.from(edge.caPem).toString('base64') } }],
      users: [{ name: 'hawser-agent', user: { token: saToken } }],
      contexts: [{ name: 'edge', context: { cluster: 'edge', user: 'hawser-agent' } }],
      'current-context': 'edge',
    };
    await writeFile(kubeconfigPath, stringify(kubeconfig), { mode: 0o600 });
    asAgent = { kubeconfigPath, workDir: join(bed.dir, 'kubectl-agent') };

    // The operator may list namespaces in the child through its group.
    await kubectl(edge, ['create', 'clusterrole', 'ns-reader', '--verb=get,list,watch', '--resource=namespaces']);
    await kubectl(edge, ['create', 'clusterrolebinding', 'readers-ns', '--clusterrole=ns-reader', `--group=${group}`]);

    const operatorsFile = join(bed.dir, 'operators');
    await writeFile(operatorsFile, `${operatorTokensYaml}  - { name: ${user}, role: viewer, token: ${operatorToken}, groups: [${group}] }\n`, { mode: 0o600 });
    hub = await bed.hub(['--auto-approve', '--api-tls', `--operator-tokens-file=${operatorsFile}`]);
    await startAgentProcess({
      name: 'edge-rbac',
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: join(bed.dir, 'agents', 'edge-rbac'),
      kubeconfig: kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: [`--proxy-impersonate-users=${user}`, `--proxy-impersonate-groups=${group}`, '--cluster-status-update-frequency=1s'],
    });
    await until('edge-rbac ready', async () => readyStatus(await hub.cluster('edge-rbac')) === 'True', 120_000);
  }, 300_000);

  afterAll(() => bed?.close());

  it('with its ServiceAccount token the agent impersonates a user and group the file names', async () => {
    const { stdout } = await kubectl(asAgent, ['auth', 'whoami', '-o', 'json', `--as=${user}`, `--as-group=${group}`]);
    const info = (JSON.parse(stdout) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
    expect(info.username).toBe(user);
    expect(info.groups).toContain(group);
  });

  it('cannot impersonate system:masters, nor a user the file does not name', async () => {
    // The child's own refusal, as the agent's credential meets it.
    const asAgentWith = (headers: Record<string, string>) => httpsRequest(`${edge.url}/api/v1/namespaces`, { ca: edge.caPem, token: saToken, headers });
    const message = (body: string) => (JSON.parse(body) as { message: string }).message;
    const masters = await asAgentWith({ 'Impersonate-User': user, 'Impersonate-Group': 'system:masters' });
    expect(masters.status).toBe(403);
    expect(message(masters.body)).toBe(
      'groups "system:masters" is forbidden: User "system:serviceaccount:hawser-system:hawser-agent" cannot impersonate resource "groups" in API group "" at the cluster scope',
    );
    const other = await asAgentWith({ 'Impersonate-User': 'someone-else' });
    expect(other.status).toBe(403);
    expect(message(other.body)).toContain('cannot impersonate resource "users"');
    // Without impersonating, its own rights (the apply role) read namespaces.
    expect((await asAgentWith({})).status).toBe(200);
  });

  it('kubectl through the hub works with the agent on these rights, as the operator', async () => {
    const kubeconfigPath = join(bed.dir, 'operator.kubeconfig');
    const r = await hawser(['kubeconfig', 'edge-rbac', `--hub=${hub.apiUrl}`, `--ca-file=${hub.caFile}`, `--output=${kubeconfigPath}`], { HAWSER_TOKEN: operatorToken });
    expect(r.code).toBe(0);
    const operator = { kubeconfigPath, workDir: join(bed.dir, 'kubectl-operator') };
    const { stdout } = await kubectl(operator, ['get', 'ns', '-o', 'name']);
    expect(stdout.split('\n')).toContain('namespace/hawser-system');
    const whoami = await kubectl(operator, ['auth', 'whoami', '-o', 'json']);
    expect((JSON.parse(whoami.stdout) as { status: { userInfo: { username: string } } }).status.userInfo.username).toBe(user);
  });
});
