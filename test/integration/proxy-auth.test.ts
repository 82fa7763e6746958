import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveContext } from '../../src/cli/config.js';
import { hawser, tempDir } from './harness.js';

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
