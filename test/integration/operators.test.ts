import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startProcess } from '../../src/testkit/index.js';
import {
  adminToken,
  bootstrapToken,
  hawser,
  hawserBin,
  type HubProcess,
  jsonLines,
  noCliConfig,
  readyStatus,
  startHubProcess,
  TestBed,
  until,
  viewerToken,
} from './harness.js';

// Operators against a real hub process: where its secrets come from, who may
// call its API, TLS off loopback, its data dir, and the mistakes an operator
// makes starting it. No edge clusters needed.

const run = promisify(execFile);

/** `hawser hub` that is expected to refuse to start: its exit code and stderr. */
async function hubRefuses(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stderr: string }> {
  const r = await hawser(['hub', '--listen=127.0.0.1:0', '--api-address=127.0.0.1:0', ...args], { HAWSER_BOOTSTRAP_TOKEN: undefined, ...env });
  return { code: r.code, stderr: r.stderr };
}

/** One sentence with a code, no stack trace. */
function expectOperatorError(r: { code: number; stderr: string }, code: string): void {
  expect(r.stderr).toContain(code);
  expect(r.code).toBe(1);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

function httpsGet(url: string, ca: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('operators: the hub API', () => {
  let bed: TestBed;
  let hub: HubProcess;

  beforeAll(async () => {
    bed = await TestBed.create('operators');
    hub = await bed.hub();
  });

  afterAll(() => bed?.close());

  it('no token or a wrong one is 401, a viewer writing is 403, and both are counted', async () => {
    const none = await hub.api('GET', '/api/v1/clusters', null);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ code: 'HAWSER_UNAUTHENTICATED' });
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await hub.api('GET', '/api/v1/clusters', `${adminToken}x`)).status).toBe(401);
    expect((await hub.api('GET', '/api/v1/clusterregistrationrequests', null)).status).toBe(401);

    expect((await hub.api('GET', '/api/v1/clusters', viewerToken)).status).toBe(200);
    const viewerApproves = await hub.api('POST', '/api/v1/clusterregistrationrequests/some-request/approve', viewerToken);
    expect(viewerApproves.status).toBe(403);
    expect(await viewerApproves.json()).toMatchObject({ code: 'HAWSER_FORBIDDEN' });
    // The admin gets through to the registrar, which knows no such request.
    expect((await hub.api('POST', '/api/v1/clusterregistrationrequests/some-request/approve', adminToken)).status).toBe(404);

    expect(await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_UNAUTHENTICATED' })).toBe(3);
    expect(await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_FORBIDDEN' })).toBe(1);
  });

  it('/healthz is open; /metrics needs a token', async () => {
    expect((await hub.api('GET', '/healthz', null)).status).toBe(200);
    expect((await hub.api('GET', '/metrics', null)).status).toBe(401);
    expect((await hub.api('GET', '/metrics', viewerToken)).status).toBe(200);
  });

  it('an approval is audited with the user, whatever its outcome', async () => {
    await hub.api('POST', '/api/v1/clusterregistrationrequests/edge-audited/approve', adminToken);
    const audit = jsonLines(hub.proc).find((l) => l.audit === true && l.target === 'edge-audited');
    expect(audit).toMatchObject({ user: 'harness-admin', action: 'approve', outcome: 'failed', code: 'HAWSER_NOT_FOUND' });
    expect(typeof audit?.time).toBe('number');
  });

  it('the CLI sends the token from --token-file, HAWSER_TOKEN or its config, and says when it has none', async () => {
    const noToken = await hawser(['get', 'clusters', `--hub=${hub.apiUrl}`], { HAWSER_TOKEN: undefined });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('HAWSER_UNAUTHENTICATED');
    expect(noToken.stderr).toContain('--token-file');

    const tokenFile = join(bed.dir, 'viewer-token');
    await writeFile(tokenFile, `${viewerToken}\n`, { mode: 0o600 });
    const viewer = await hawser(['get', 'clusters', `--hub=${hub.apiUrl}`, `--token-file=${tokenFile}`], { HAWSER_TOKEN: undefined });
    expect(viewer).toMatchObject({ code: 0, stdout: 'No clusters found.\n' });
    const forbidden = await hawser(['approve', 'x', `--hub=${hub.apiUrl}`, `--token-file=${tokenFile}`]);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toContain('HAWSER_FORBIDDEN');

    const config = join(bed.dir, 'cli', 'config');
    await mkdir(join(bed.dir, 'cli'));
    await writeFile(config, `current-context: here\ncontexts:\n  - name: here\n    server: ${hub.apiUrl}\n    token: ${viewerToken}\n`);
    const fromConfig = await hawser(['get', 'clsrr'], { HAWSER_CONFIG: config, HAWSER_TOKEN: undefined });
    expect(fromConfig).toMatchObject({ code: 0, stdout: 'No registration requests found.\n' });
  });

  it('no secret reaches the hub log, and the log file is 0600', async () => {
    const log = await readFile(hub.proc.logPath, 'utf8');
    for (const secret of [bootstrapToken, adminToken, viewerToken]) expect(log).not.toContain(secret);
    expect((await stat(hub.proc.logPath)).mode & 0o777).toBe(0o600);
  });
});

describe('operators: secrets at start-up', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await TestBed.create('hub-secrets');
  });
  afterAll(() => bed?.close());

  it('--bootstrap-token is gone from hub and agent, pointing at the file and the environment', async () => {
    const hub = await hawser(['hub', `--bootstrap-token=${bootstrapToken}`]);
    expect(hub.code).toBe(2);
    expect(hub.stderr).toContain('--bootstrap-token-file');
    expect(hub.stderr).toContain('HAWSER_BOOTSTRAP_TOKEN');
    expect(hub.stderr).not.toContain(bootstrapToken);
    const agent = await hawser(['agent', '--cluster-reg-name=x', '--bootstrap-token', bootstrapToken]);
    expect(agent.code).toBe(2);
    expect(agent.stderr).toContain('PARENT_CLUSTER_TOKEN');
    expect(agent.stderr).not.toContain(bootstrapToken);
  });

  it('refuses to start on an empty or malformed bootstrap token from any source', async () => {
    const empty = join(bed.dir, 'empty-token');
    await writeFile(empty, '\n', { mode: 0o600 });
    const malformed = join(bed.dir, 'malformed-token');
    await writeFile(malformed, 'not-a-token\n', { mode: 0o600 });
    const cases: Array<[string[], Record<string, string>]> = [
      [[`--data-dir=${join(bed.dir, 'd1')}`, `--bootstrap-token-file=${empty}`], {}],
      [[`--data-dir=${join(bed.dir, 'd2')}`, `--bootstrap-token-file=${malformed}`], {}],
      [[`--data-dir=${join(bed.dir, 'd3')}`], { HAWSER_BOOTSTRAP_TOKEN: '' }],
      [[`--data-dir=${join(bed.dir, 'd4')}`], { HAWSER_BOOTSTRAP_TOKEN: 'abcdef.short' }],
    ];
    for (const [args, env] of cases) {
      const r = await hubRefuses(args, env);
      expectOperatorError(r, 'HAWSER_INVALID_BOOTSTRAP_TOKEN');
      expect(r.stderr).not.toContain('not-a-token');
    }
    // The token file the hub generates, found empty on a later start (a crash, a careless edit).
    const dataDir = join(bed.dir, 'd5');
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'bootstrap-token'), '');
    expectOperatorError(await hubRefuses([`--data-dir=${dataDir}`]), 'HAWSER_INVALID_BOOTSTRAP_TOKEN');
  });

  it('refuses to start on an empty or malformed operator tokens file', async () => {
    const env = { HAWSER_BOOTSTRAP_TOKEN: bootstrapToken };
    const empty = join(bed.dir, 'empty-operator-tokens');
    await writeFile(empty, '', { mode: 0o600 });
    expectOperatorError(await hubRefuses([`--data-dir=${join(bed.dir, 'o1')}`, `--operator-tokens-file=${empty}`], env), 'HAWSER_INVALID_OPERATOR_TOKENS');
    const missing = join(bed.dir, 'no-such-file');
    expectOperatorError(await hubRefuses([`--data-dir=${join(bed.dir, 'o1')}`, `--operator-tokens-file=${missing}`], env), 'HAWSER_INVALID_OPERATOR_TOKENS');
    expectOperatorError(await hubRefuses([`--data-dir=${join(bed.dir, 'o1')}`, `--bootstrap-token-file=${missing}`]), 'HAWSER_INVALID_BOOTSTRAP_TOKEN');
    const dataDir = join(bed.dir, 'o2');
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'operator-tokens'), 'operators:\n  - { name: admin, role: admin, token: "" }\n');
    expectOperatorError(await hubRefuses([`--data-dir=${dataDir}`], env), 'HAWSER_INVALID_OPERATOR_TOKENS');
  });

  it('generates its bootstrap token, keys and an admin operator token 0600, and logs where, not what', async () => {
    const dataDir = join(bed.dir, 'generated');
    const hub = await startProcess({
      name: 'hub-generated',
      command: process.execPath,
      args: [hawserBin, 'hub', `--data-dir=${dataDir}`, '--listen=127.0.0.1:0', '--api-address=127.0.0.1:0'],
      env: { HAWSER_BOOTSTRAP_TOKEN: undefined },
      logDir: bed.logDir,
      tracker: bed.tracker,
    });
    await hub.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready' });
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, 'pki'))).mode & 0o777).toBe(0o700);
    for (const secret of ['bootstrap-token', 'operator-tokens', 'pki/ca.key', 'pki/hub.key']) {
      expect({ secret, mode: (await stat(join(dataDir, secret))).mode & 0o777 }).toEqual({ secret, mode: 0o600 });
    }
    expect(await readdir(dataDir)).not.toContainEqual(expect.stringMatching(/\.tmp$/));
    const token = /token: (\S+)/.exec(await readFile(join(dataDir, 'operator-tokens'), 'utf8'))![1]!;
    const generatedBootstrap = (await readFile(join(dataDir, 'bootstrap-token'), 'utf8')).trim();
    const ready = jsonLines(hub).find((l) => l.msg === 'hub ready')!;
    expect(jsonLines(hub).some((l) => l.file === join(dataDir, 'operator-tokens'))).toBe(true);

    const listed = await hawser(['get', 'clusters', `--hub=${String(ready.api)}`], { HAWSER_TOKEN: token });
    expect(listed).toMatchObject({ code: 0, stdout: 'No clusters found.\n' });
    await hub.stop();
    const log = await readFile(hub.logPath, 'utf8');
    expect(log).not.toContain(token);
    expect(log).not.toContain(generatedBootstrap);
  });

  it("an agent's empty --bootstrap-token-file is refused with a code", async () => {
    const empty = join(bed.dir, 'agent-empty-token');
    await writeFile(empty, '', { mode: 0o600 });
    const r = await hawser(['agent', '--cluster-reg-name=x', `--bootstrap-token-file=${empty}`, `--cache-dir=${join(bed.dir, 'agent-cache')}`]);
    expectOperatorError(r, 'HAWSER_INVALID_BOOTSTRAP_TOKEN');
  });

  it('hub and agent take the bootstrap token from --bootstrap-token-file', async () => {
    const fileToken = 'filetk.0123456789abcdef';
    const tokenFile = join(bed.dir, 'token');
    await writeFile(tokenFile, `${fileToken}\n`, { mode: 0o600 });
    const dataDir = join(bed.dir, 'from-file');
    const hub = await startHubProcess({
      dataDir,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: [`--bootstrap-token-file=${tokenFile}`, '--auto-approve'],
      env: { HAWSER_BOOTSTRAP_TOKEN: undefined },
    });
    // A token was given, so none is generated.
    expect(await readdir(dataDir)).not.toContain('bootstrap-token');
    const kube = await bed.kube('edge-token-file');
    // The agent's environment holds a token this hub does not accept: the file wins.
    const agent = await bed.agent('edge-token-file', hub, kube, [`--bootstrap-token-file=${tokenFile}`]);
    await until('edge-token-file ready', async () => readyStatus(await hub.cluster('edge-token-file')) === 'True');
    for (const proc of [hub.proc, agent]) expect(await readFile(proc.logPath, 'utf8')).not.toContain(fileToken);
  });
});

describe('operators: TLS off loopback', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await TestBed.create('tls');
  });
  afterAll(() => bed?.close());

  it('serves https with the hub CA when bound beyond loopback, and /metrics anonymously only when asked', async () => {
    const apiPort = await freePort({ tracker: bed.tracker });
    const hub = await startHubProcess({
      dataDir: join(bed.dir, 'hub'),
      logDir: bed.logDir,
      tracker: bed.tracker,
      apiPort,
      args: [`--api-address=0.0.0.0:${apiPort}`, '--metrics-anonymous'],
    });
    const ready = jsonLines(hub.proc).find((l) => l.msg === 'hub ready')!;
    expect(String(ready.api)).toMatch(/^https:\/\//);
    const ca = await readFile(hub.caFile, 'utf8');
    const url = `https://127.0.0.1:${apiPort}`;
    expect((await httpsGet(`${url}/healthz`, ca)).status).toBe(200);
    expect((await httpsGet(`${url}/metrics`, ca)).status).toBe(200);
    expect((await httpsGet(`${url}/api/v1/clusters`, ca)).status).toBe(401);
    expect((await httpsGet(`${url}/api/v1/clusters`, ca, viewerToken)).status).toBe(200);
    // Plain HTTP gets no answer from a TLS socket.
    await expect(fetch(`http://127.0.0.1:${apiPort}/healthz`)).rejects.toThrow();

    const trusted = await hawser(['get', 'clusters', `--hub=${url}`, `--ca-file=${hub.caFile}`]);
    expect(trusted).toMatchObject({ code: 0, stdout: 'No clusters found.\n' });
    const untrusted = await hawser(['get', 'clusters', `--hub=${url}`]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain('HAWSER_UNTRUSTED_HUB');
    await hub.proc.stop();
  });
});

describe('operators: the data dir', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await TestBed.create('datadir');
  });
  afterAll(() => bed?.close());

  it('a second hub on the same data dir fails with the first one\'s pid and changes none of its files', async () => {
    const dataDir = join(bed.dir, 'hub');
    const first = await startHubProcess({ dataDir, logDir: bed.logDir, tracker: bed.tracker });
    const files = ['pki/hub.crt', 'pki/hub.key', 'pki/hub.sans', 'pki/ca.crt', 'pki/ca.key', 'hub.lock'];
    const before = await Promise.all(files.map((f) => readFile(join(dataDir, f), 'utf8')));

    // Another SAN would make it rewrite the serving certificate, were it let in.
    const second = await hubRefuses([`--data-dir=${dataDir}`, '--tls-san=second.example'], { HAWSER_BOOTSTRAP_TOKEN: bootstrapToken });
    expectOperatorError(second, 'HAWSER_DATA_DIR_IN_USE');
    expect(second.stderr).toContain(`in use by pid ${first.proc.pid}`);
    expect(await Promise.all(files.map((f) => readFile(join(dataDir, f), 'utf8')))).toEqual(before);
    expect((await first.api('GET', '/api/v1/clusters')).status).toBe(200);

    // A hub killed outright leaves its lock; the next start sees the pid is dead and takes over.
    first.proc.kill('SIGKILL');
    await first.proc.exited;
    const next = await startHubProcess({ dataDir, logDir: bed.logDir, tracker: bed.tracker });
    expect((await readFile(join(dataDir, 'hub.lock'), 'utf8')).trim()).toBe(String(next.proc.pid));
    await next.proc.stop();
  });

  it('a data dir that is a file: a code and one sentence', async () => {
    const file = join(bed.dir, 'a-file');
    await writeFile(file, 'x');
    expectOperatorError(await hubRefuses([`--data-dir=${file}`]), 'HAWSER_DATA_DIR_NOT_DIRECTORY');
    expectOperatorError(await hubRefuses([`--data-dir=${join(file, 'below')}`]), 'HAWSER_DATA_DIR_NOT_DIRECTORY');
  });

  it('an unwritable data dir: a code and one sentence', async () => {
    // Root writes anywhere; run the hub as nobody under a directory root owns.
    const parent = join(bed.dir, 'root-owned');
    await mkdir(parent);
    await chmod(bed.dir, 0o755);
    await chmod(parent, 0o755);
    let result: { code: number; stderr: string };
    try {
      await run(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, hawserBin, 'hub', `--data-dir=${join(parent, 'data')}`, '--listen=127.0.0.1:0', '--api-address=127.0.0.1:0'],
        { env: { ...process.env, HAWSER_BOOTSTRAP_TOKEN: bootstrapToken, HAWSER_CONFIG: noCliConfig }, timeout: 60_000 },
      );
      result = { code: 0, stderr: '' };
    } catch (err) {
      const e = err as { code?: number; stderr?: string };
      result = { code: typeof e.code === 'number' ? e.code : -1, stderr: e.stderr ?? '' };
    }
    expectOperatorError(result, 'HAWSER_DATA_DIR_UNWRITABLE');
  });
});
