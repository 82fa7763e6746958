import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OperatorAuthenticator, generateOperatorToken, parseOperatorTokens, renderOperatorTokens, roleAllows } from '../../src/hub/auth.js';
import { lockDataDir } from '../../src/hub/datadir.js';
import { type HubApiDeps, hubApiRoutes } from '../../src/hub/http.js';
import { parseBootstrapTokens, tokenMatches } from '../../src/hub/tokens.js';
import { resolveHubTarget, saveContext } from '../../src/cli/config.js';
import { createLogger } from '../../src/cli/log.js';
import { ErrorCode } from '../../src/tunnel/index.js';

const alice = 'hwo_alice-0123456789abcdef';
const bob = 'hwo_bob-0123456789abcdefgh';
const file = `operators:
  - name: alice
    role: admin
    token: ${alice}
  - name: bob
    role: viewer
    token: ${bob}
`;

describe('operator tokens', () => {
  it('parses name, role and token per entry', () => {
    expect(parseOperatorTokens(file, 'f')).toEqual([
      { name: 'alice', role: 'admin', token: alice },
      { name: 'bob', role: 'viewer', token: bob },
    ]);
  });

  it.each([
    ['empty file', ''],
    ['no list', 'operators: []'],
    ['unknown role', `operators: [{ name: a, role: root, token: ${alice} }]`],
    ['short token', 'operators: [{ name: a, role: admin, token: short }]'],
    ['empty token', "operators: [{ name: a, role: admin, token: '' }]"],
    ['unknown key', `operators: [{ name: a, role: admin, token: ${alice}, tokn: x }]`],
    ['duplicate token', `operators: [{ name: a, role: admin, token: ${alice} }, { name: b, role: viewer, token: ${alice} }]`],
    ['not yaml', 'operators: [: :'],
  ])('refuses a file with %s, naming no token', (_, text) => {
    let caught: unknown;
    try {
      parseOperatorTokens(text, '/etc/hawser/tokens');
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: ErrorCode.InvalidOperatorTokens });
    expect((caught as Error).message).toContain('/etc/hawser/tokens');
    expect((caught as Error).message).not.toContain(alice);
  });

  it('round-trips what it renders, and generates long random tokens', () => {
    const entries = [{ name: 'admin', role: 'admin' as const, token: generateOperatorToken() }];
    expect(parseOperatorTokens(renderOperatorTokens(entries), 'f')).toEqual(entries);
    expect(entries[0]!.token).toMatch(/^hwo_[A-Za-z0-9_-]{43}$/);
    expect(generateOperatorToken()).not.toBe(entries[0]!.token);
  });

  it('authenticates a bearer token to its operator and nothing else', () => {
    const auth = new OperatorAuthenticator(parseOperatorTokens(file, 'f'));
    expect(auth.authenticate(`Bearer ${alice}`)).toEqual({ name: 'alice', role: 'admin' });
    expect(auth.authenticate(`bearer ${bob}`)).toEqual({ name: 'bob', role: 'viewer' });
    for (const header of [undefined, '', 'Bearer', 'Bearer ', `Basic ${alice}`, `Bearer ${alice}x`, `Bearer ${alice.slice(0, -1)}`, alice]) {
      expect(auth.authenticate(header)).toBeUndefined();
    }
  });

  it('admin may do what a viewer may, not the reverse', () => {
    expect(roleAllows('admin', 'viewer')).toBe(true);
    expect(roleAllows('admin', 'admin')).toBe(true);
    expect(roleAllows('viewer', 'viewer')).toBe(true);
    expect(roleAllows('viewer', 'admin')).toBe(false);
  });
});

describe('bootstrap token sources', () => {
  it('an empty source is refused, never taken as the empty token', () => {
    for (const text of ['', '\n', '  \n# comment\n']) {
      expect(() => parseBootstrapTokens(text, 'bootstrap-token')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidBootstrapToken }));
    }
    expect(tokenMatches('', [''])).toBe(false);
  });

  it('a malformed token is refused, naming the source and line but not the token', () => {
    let caught: Error | undefined;
    try {
      parseBootstrapTokens('abcdef.0123456789abcdef\nsecret-ish-value\n', '/etc/t');
    } catch (err) {
      caught = err as Error;
    }
    expect(caught).toMatchObject({ code: ErrorCode.InvalidBootstrapToken });
    expect(caught!.message).toContain('/etc/t (line 2)');
    expect(caught!.message).not.toContain('secret-ish-value');
  });

  it('takes one token a line', () => {
    expect(parseBootstrapTokens('abcdef.0123456789abcdef\n\nzyxwvu.0123456789abcdef\n', 'f')).toEqual([
      'abcdef.0123456789abcdef',
      'zyxwvu.0123456789abcdef',
    ]);
  });
});

describe('log redaction', () => {
  it('replaces tokens and credentials wherever a call site puts them', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger('t', 'info', sink);
    logger.info({ token: 's1', bootstrapToken: 's2', credential: 's3', nested: { token: 's4', authorization: 'Bearer s5' } }, 'x');
    logger.info({ req: { headers: { authorization: 'Bearer s6' } } }, 'y');
    const text = lines.join('');
    for (const secret of ['s1', 's2', 's3', 's4', 's5', 's6']) expect(text).not.toContain(`"${secret}"`);
    expect(text).toContain('[redacted]');
  });
});

describe('data dir lock', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hawser-lock-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('refuses while the holder lives, naming its pid', async () => {
    // pid 1 always lives.
    await writeFile(join(dir, 'hub.lock'), '1\n');
    await expect(lockDataDir(dir)).rejects.toMatchObject({ code: ErrorCode.DataDirInUse, message: expect.stringContaining('in use by pid 1') });
  });

  it('refuses a data dir this very process holds', async () => {
    const lock = await lockDataDir(dir);
    await expect(lockDataDir(dir)).rejects.toMatchObject({ code: ErrorCode.DataDirInUse });
    await lock.release();
    await (await lockDataDir(dir)).release();
  });

  it('takes over a lock whose pid is dead, and releases only its own', async () => {
    await writeFile(join(dir, 'hub.lock'), '2147483646\n');
    const lock = await lockDataDir(dir);
    expect((await readFile(lock.path, 'utf8')).trim()).toBe(String(process.pid));
    expect((await stat(lock.path)).isFile()).toBe(true);
    await lock.release();
    await expect(stat(lock.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('CLI config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hawser-config-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('flags beat environment variables, which beat the current context', async () => {
    const config = join(dir, 'sub', 'config');
    await saveContext(config, { name: 'a', server: 'http://a:1', token: 'ctx-token-a' }, true);
    await saveContext(config, { name: 'b', server: 'https://b:2', token: 'ctx-token-b', 'certificate-authority-data': Buffer.from('PEM').toString('base64') }, false);
    expect((await stat(config)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'sub'))).mode & 0o777).toBe(0o700);

    const env = { HAWSER_CONFIG: config };
    expect(await resolveHubTarget({}, env)).toEqual({ server: 'http://a:1', token: 'ctx-token-a', context: 'a' });
    expect(await resolveHubTarget({ context: 'b' }, env)).toEqual({ server: 'https://b:2', token: 'ctx-token-b', caPem: 'PEM', context: 'b' });
    expect(await resolveHubTarget({}, { ...env, HAWSER_HUB: 'h:3', HAWSER_TOKEN: 'env-token' })).toMatchObject({ server: 'http://h:3', token: 'env-token' });
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'file-token\n');
    expect(await resolveHubTarget({ hub: 'http://f:4/', tokenFile }, { ...env, HAWSER_HUB: 'h:3', HAWSER_TOKEN: 'env-token' })).toMatchObject({
      server: 'http://f:4',
      token: 'file-token',
    });
    await expect(resolveHubTarget({ context: 'nope' }, env)).rejects.toMatchObject({ code: ErrorCode.CliConfigInvalid });
    expect(await resolveHubTarget({}, { HAWSER_CONFIG: join(dir, 'missing') })).toEqual({ server: 'http://127.0.0.1:7101' });
  });
});

describe('hub API routes', () => {
  it('every route says who may call it: writes and audited actions need admin, only /healthz and opted-in /metrics are public', () => {
    const deps = { metricsAnonymous: false } as unknown as HubApiDeps;
    const routes = hubApiRoutes(deps);
    const writes = routes.filter((r) => r.method !== 'GET' || r.audit);
    // approve, deny, delete cluster and the three PKI rotations at least.
    expect(writes.length).toBeGreaterThanOrEqual(6);
    for (const r of writes) expect({ route: `${r.method} ${r.path.source}`, access: r.access }).toEqual({ route: `${r.method} ${r.path.source}`, access: 'admin' });
    expect(routes.filter((r) => r.access === 'public').map((r) => r.path.source)).toEqual(['^\\/healthz$']);
    const anonymous = hubApiRoutes({ metricsAnonymous: true } as unknown as HubApiDeps);
    expect(anonymous.filter((r) => r.access === 'public').map((r) => r.path.source)).toEqual(['^\\/healthz$', '^\\/metrics$']);
  });
});
