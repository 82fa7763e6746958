import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseKubeconfigYaml } from '../../src/agent/kubeconfig-yaml.js';
import { kubeconfigYaml, seeded } from '../../src/testkit/index.js';

// The agent reads kubeconfigs without the yaml package when they are in the
// subset kubectl and client-go write; anything else goes to yaml. Either way a
// kubeconfig must read exactly as yaml reads it.

/** As `kubectl config view --raw` and kind write them (client-go: sequences at their key's indent). */
const kindConfig = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUREQmhyTTNNdGMyVnkK
    server: https://127.0.0.1:36417
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
current-context: kind-kind
kind: Config
preferences: {}
users:
- name: kind-kind
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ==
`;

const execConfig = `# written by hand
apiVersion: v1
kind: Config
current-context: "edge"
clusters:
  - name: edge
    cluster:
      server: 'https://10.0.0.1:6443'
      insecure-skip-tls-verify: true
      tls-server-name: api.edge.local
contexts:
  - name: edge
    context:
      cluster: edge
      user: robot
      namespace: ~
users:
  - name: robot
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        command: /usr/local/bin/get-token
        args:
          - --cluster=edge
          - "--region"
          - 'it''s'
        env: []
        interactiveMode: Never
        provideClusterInfo: false
`;

describe('parseKubeconfigYaml', () => {
  it('reads kubeconfigs as kubectl and people write them, exactly as yaml does', () => {
    const testbed = kubeconfigYaml({ name: 'edge', url: 'https://127.0.0.1:6443', caPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'.repeat(8), token: 'abc.def' });
    for (const text of [kindConfig, execConfig, `---\n${kindConfig}`, kindConfig.replace(/\n/g, '\r\n'), testbed]) {
      const light = parseKubeconfigYaml(text);
      expect(light).toBeDefined();
      expect(light).toEqual(parse(text));
    }
  });

  it('leaves to yaml what is outside its subset', () => {
    const outside = [
      'a: &x {b: 1}\nc: *x\n', // anchors, aliases, flow mappings
      'a: [1, 2]\n',
      'a: |\n  line\n',
      'a: >\n  folded\n',
      'a: !!str 1\n',
      'a: 8080\n', // numbers: yaml's to type
      'a: 0x1F\n',
      'a: .inf\n',
      'a: "escaped\\n"\n',
      'a: plain\n  continued\n', // a multi-line plain scalar
      'a: b # comment\n',
      'a: 1\na: 2\n', // duplicate keys (yaml refuses them)
      '"a\\tb": c\n',
      'a:\tb\n',
      'a: b\n---\nc: d\n', // two documents
      'just a scalar\n',
      '- a\nb: c\n',
      '? complex\n: key\n',
      '__proto__: x\n',
    ];
    for (const text of outside) expect(parseKubeconfigYaml(text), JSON.stringify(text)).toBeUndefined();
  });

  it('never reads a generated document differently from yaml (seeded; a failure prints its seed)', () => {
    const seed = Number(process.env.HAWSER_TEST_SEED ?? Date.now() % 1_000_000);
    const random = seeded(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const scalars = ['v1', 'https://10.0.0.1:6443', 'kind-kind', 'LS0tLS1C==', '--flag', 'a b', "it's", 'x:y', 'a#b', 'true', 'null', '8080', '', ' lead', 'trail ', 'ü', '- dash', '{}', '1.5', 'yes', '~', '"q"', 'a: b'];
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.5) return pick<unknown>([...scalars, true, false, null, 7, {}, []]);
      if (r < 0.75) return Array.from({ length: 1 + Math.floor(random() * 3) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: 1 + Math.floor(random() * 4) }, (_, i) => [pick(['name', 'cluster', 'user', 'server', 'a-b', 'x.y/z', 'true', '1', 'k k']) + (i ? i : ''), value(depth + 1)]));
    };
    let light = 0;
    for (let i = 0; i < 400; i++) {
      const doc = { apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: value(1) }], users: value(1) };
      const text = stringify(doc, { indentSeq: random() < 0.5, lineWidth: 0 });
      const got = parseKubeconfigYaml(text);
      if (got !== undefined) light++;
      expect(got === undefined || JSON.stringify(got) === JSON.stringify(parse(text)), `seed ${seed}, document ${i}:\n${text}`).toBe(true);
    }
    // The light path is taken for a good share of them, or this test would prove nothing.
    expect(light, `seed ${seed}`).toBeGreaterThan(40);
  });
});
