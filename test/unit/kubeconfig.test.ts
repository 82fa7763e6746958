import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type KubeAccess, LeanKubeConfig, loadKubeConfig } from '../../src/agent/index.js';
import { createCertificateAuthority, ErrorCode } from '../../src/tunnel/index.js';

// The agent reads kubeconfigs itself (client-node's loader costs 114 MB of
// RSS). client-node's KubeConfig is the oracle: both must give a request the
// same TLS material and credentials for the same file.

let dir: string;
let caPem: string;
let certPem: string;
let keyPem: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hawser-kubeconfig-'));
  const ca = await createCertificateAuthority('kubeconfig-test-ca');
  const client = await createCertificateAuthority('kubeconfig-test-client');
  caPem = ca.certPem;
  certPem = client.certPem;
  keyPem = client.keyPem;
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown>): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    contexts: [{ name: 'other', context: { cluster: 'nope', user: 'nope' } }, { name: 'ctx', context: { cluster: 'c', user: 'u' } }],
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443', ...cluster } }],
    users: [{ name: 'u', user }],
  });
}

async function writeConfig(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

/** What a request gets from either implementation, in one comparable shape. */
async function applied(access: KubeAccess): Promise<Record<string, unknown>> {
  const options: RequestOptions = { headers: {} };
  await access.applyToHTTPSOptions(options);
  const headers = Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const authorization = headers.authorization ?? (options.auth ? `Basic ${Buffer.from(options.auth).toString('base64')}` : undefined);
  return {
    server: access.getCurrentCluster()?.server,
    ca: options.ca?.toString(),
    cert: options.cert?.toString(),
    key: options.key?.toString(),
    authorization,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    servername: options.servername,
  };
}

async function both(path: string): Promise<{ lean: Record<string, unknown>; reference: Record<string, unknown> }> {
  const reference = new KubeConfig();
  reference.loadFromFile(path);
  return { lean: await applied(loadKubeConfig(path, {})), reference: await applied(reference) };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('the agent kubeconfig reader agrees with client-node', () => {
  it('inline CA, client certificate and key, with a bearer token', async () => {
    const path = await writeConfig(
      'inline.yaml',
      kubeconfig({ 'certificate-authority-data': b64(caPem), 'tls-server-name': 'kubernetes' }, { 'client-certificate-data': b64(certPem), 'client-key-data': b64(keyPem), token: 'tok-123' }),
    );
    const { lean, reference } = await both(path);
    expect(lean).toEqual(reference);
    expect(lean).toMatchObject({ ca: caPem, cert: certPem, key: keyPem, authorization: 'Bearer tok-123', servername: 'kubernetes', rejectUnauthorized: true });
  });

  it('files named relative to the kubeconfig', async () => {
    await mkdir(join(dir, 'pki'), { recursive: true });
    await writeFile(join(dir, 'pki', 'ca.crt'), caPem);
    await writeFile(join(dir, 'pki', 'client.crt'), certPem);
    await writeFile(join(dir, 'pki', 'client.key'), keyPem, { mode: 0o600 });
    const path = await writeConfig(
      'files.yaml',
      kubeconfig({ 'certificate-authority': 'pki/ca.crt' }, { 'client-certificate': 'pki/client.crt', 'client-key': 'pki/client.key' }),
    );
    // client-node resolves relative paths against the working directory, not
    // the file (kubectl resolves against the file), so compare from there.
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const { lean, reference } = await both(path);
      expect(lean).toEqual(reference);
      expect(lean).toMatchObject({ ca: caPem, cert: certPem, key: keyPem });
    } finally {
      process.chdir(cwd);
    }
  });

  it('basic auth and insecure-skip-tls-verify', async () => {
    const path = await writeConfig('basic.yaml', kubeconfig({ 'insecure-skip-tls-verify': true }, { username: 'ann', password: 's3cret' }));
    const { lean, reference } = await both(path);
    expect(lean).toEqual(reference);
    expect(lean).toMatchObject({ authorization: `Basic ${b64('ann:s3cret')}`, rejectUnauthorized: false });
  });
});

describe('token files', () => {
  // client-node reads no tokenFile; kubectl does, and a bound service-account
  // token in a file is rotated by the kubelet, so it is read again after a while.
  it('reads the file, relative to the kubeconfig, and again after a minute', async () => {
    await mkdir(join(dir, 'tok'), { recursive: true });
    await writeFile(join(dir, 'tok', 'token'), 'first\n', { mode: 0o600 });
    let now = 1_000_000;
    const access = LeanKubeConfig.fromText(kubeconfig({}, { tokenFile: 'tok/token' }), 'tok.yaml', dir, () => now);
    expect((await applied(access)).authorization).toBe('Bearer first');
    await writeFile(join(dir, 'tok', 'token'), 'second\n');
    expect((await applied(access)).authorization).toBe('Bearer first');
    now += 60_000;
    expect((await applied(access)).authorization).toBe('Bearer second');
  });
});

describe('exec credential plugins', () => {
  it('runs the plugin with KUBERNETES_EXEC_INFO, and reuses its token until it expires', async () => {
    const calls = join(dir, 'exec-calls');
    const expiry = new Date(Date.now() + 3_600_000).toISOString();
    const plugin = join(dir, 'plugin.sh');
    await writeFile(
      plugin,
      `#!/bin/sh\necho "$KUBERNETES_EXEC_INFO $GREETING" >> "${calls}"\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token","expirationTimestamp":"${expiry}"}}'\n`,
    );
    await chmod(plugin, 0o700);
    const path = await writeConfig('exec.yaml', kubeconfig({}, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: './plugin.sh', env: [{ name: 'GREETING', value: 'hi' }] } }));
    const access = loadKubeConfig(path, {});
    expect((await applied(access)).authorization).toBe('Bearer exec-token');
    expect((await applied(access)).authorization).toBe('Bearer exec-token');
    const lines = (await readFile(calls, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!.replace(/ hi$/, ''))).toMatchObject({ kind: 'ExecCredential', apiVersion: 'client.authentication.k8s.io/v1' });
    expect(lines[0]).toMatch(/ hi$/);
  });

  it('runs it again once the token has expired', async () => {
    const calls = join(dir, 'exec-calls-2');
    const plugin = join(dir, 'plugin2.sh');
    await writeFile(plugin, `#!/bin/sh\necho x >> "${calls}"\nprintf '{"status":{"token":"t2","expirationTimestamp":"2000-01-01T00:00:00Z"}}'\n`);
    await chmod(plugin, 0o700);
    const path = await writeConfig('exec2.yaml', kubeconfig({}, { exec: { command: plugin } }));
    const access = LeanKubeConfig.fromText(await readFile(path, 'utf8'), path, dir);
    await applied(access);
    await applied(access);
    expect((await readFile(calls, 'utf8')).trim().split('\n')).toHaveLength(2);
  });

  it('a failing plugin is HAWSER_UNAVAILABLE naming the command', async () => {
    const path = await writeConfig('exec3.yaml', kubeconfig({}, { exec: { command: '/bin/false' } }));
    await expect(applied(loadKubeConfig(path, {}))).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringContaining('/bin/false') });
  });
});

describe('in-cluster', () => {
  it('uses the service account token and CA, and the service host', async () => {
    const sa = join(dir, 'sa');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'ca.crt'), caPem);
    await writeFile(join(sa, 'token'), 'sa-token');
    const access = LeanKubeConfig.inCluster({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, sa);
    expect(await applied(access)).toMatchObject({ server: 'https://[fd00::1]:443', ca: caPem, authorization: 'Bearer sa-token', rejectUnauthorized: true });
  });
});

describe('refusals name the problem', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['no current context', stringify({ clusters: [] }), /no current-context/],
    ['a context naming a missing cluster', kubeconfig({}, {}).replace('cluster: c\n', 'cluster: missing\n'), /cluster "missing" is not defined/],
    ['a server that is no URL', kubeconfig({ server: 'not a url' }, {}), /server "not a url" is not a URL/],
    ['an auth-provider', kubeconfig({}, { 'auth-provider': { name: 'gcp' } }), /auth-provider "gcp".*exec credential plugin/],
    ['a proxy-url', kubeconfig({ 'proxy-url': 'http://proxy:3128' }, {}), /proxy-url/],
    ['a certificate without its key', kubeconfig({}, { 'client-certificate-data': b64('x') }), /without a key/],
    ['a missing CA file', kubeconfig({ 'certificate-authority': 'nope.crt' }, {}), /certificate-authority nope\.crt/],
    ['text that is not YAML', 'a: [b', /not YAML/],
  ];
  for (const [name, text, message] of cases) {
    it(name, () => {
      expect(() => LeanKubeConfig.fromText(text, 'test.yaml', dir)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringMatching(message) }));
    });
  }

  it('KUBECONFIG naming several files', () => {
    expect(() => loadKubeConfig(undefined, { KUBECONFIG: ['/a', '/b'].join(':') })).toThrow(/names 2 files/);
  });

  it('a kubeconfig file that does not exist', () => {
    expect(() => loadKubeConfig(join(dir, 'absent.yaml'), {})).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining('absent.yaml') }));
  });
});
