import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadOrCreateSealKey, SealKey } from '../../src/cache/index.js';
import { startHub } from '../../src/hub/server.js';
import { EmbeddedStore, type FeedKey, type HubStore, type KubeObject, SealingStore } from '../../src/hub/store.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { silentLogger } from './support.js';

const password = 'plain-hunter2-xyzzy';
const token = 'token-value-qwerty';
const visible = 'configmap-value-visible-123';

const secretKey: FeedKey = { apiVersion: 'v1', kind: 'Secret', namespace: 'app', name: 'db' };
function secret(name = 'db'): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace: 'app',
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ stringData: { password } }) },
    },
    type: 'Opaque',
    data: { token: Buffer.from(token).toString('base64') },
    stringData: { password },
  };
}
const configMapKey: FeedKey = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'app', name: 'cfg' };
const configMap: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'app' }, data: { visible } };

describe('SealingStore: Secrets encrypted at rest', () => {
  const dirs: string[] = [];
  const open: HubStore[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close().catch(() => undefined)));
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function tempDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'hawser-seal-'));
    dirs.push(d);
    return d;
  }
  async function openAt(dir: string): Promise<{ store: SealingStore; inner: EmbeddedStore; keyCreated: boolean }> {
    const inner = await EmbeddedStore.open(join(dir, 'store'));
    try {
      const { store, keyCreated } = await SealingStore.open(inner, join(dir, 'secret-key'));
      open.push(store);
      return { store, inner, keyCreated };
    } catch (err) {
      await inner.close();
      throw err;
    }
  }
  async function rawBytes(dir: string): Promise<Buffer> {
    const files = await readdir(dir);
    return Buffer.concat(await Promise.all(files.map((f) => readFile(join(dir, f)))));
  }

  it('keeps a fed Secret (data, stringData, annotations; object and history) off the disk, and hands it back whole', async () => {
    const dir = await tempDir();
    const { store, inner, keyCreated } = await openAt(dir);
    expect(keyCreated).toBe(true);
    const key = await stat(join(dir, 'secret-key'));
    expect(key.mode & 0o777).toBe(0o600);
    expect(key.size).toBe(32);

    const start = (await store.info()).resourceVersion;
    const rv = await store.put('Feed', secretKey, secret());
    await store.put('Feed', configMapKey, configMap);
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'db' }, { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Manifest', metadata: { name: 'db', namespace: 'clusternet-abc' }, template: secret() });
    await store.put('Subscription', { namespace: 'app', name: 's' }, { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Subscription', metadata: { name: 's', namespace: 'app' }, spec: { feeds: [secretKey] } });
    // A feed naming a Secret is no Secret: the Subscription stays readable without the key.
    expect(await inner.get('Subscription', { namespace: 'app', name: 's' })).toMatchObject({ spec: { feeds: [secretKey] } });
    expect(Object.keys((await inner.get('Feed', secretKey))!)).toEqual(['sealed']);
    expect(Object.keys((await inner.get('Manifest', { namespace: 'clusternet-abc', name: 'db' }))!)).toEqual(['sealed']);
    const got = await store.get('Feed', secretKey);
    expect(got).toEqual({ ...secret(), metadata: { ...secret().metadata, resourceVersion: rv } });
    const events = store.watch('Feed', { resourceVersion: start })[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ type: 'ADDED', object: { stringData: { password } }, resourceVersion: rv });
    await events.return?.();
    await store.delete('Feed', secretKey);
    await store.close();

    const bytes = await rawBytes(join(dir, 'store'));
    expect(bytes.includes(visible)).toBe(true); // the read sees stored values: plain ones show
    for (const s of [password, token, Buffer.from(token).toString('base64')]) expect(bytes.includes(s)).toBe(false);
  });

  it('seals a Manifest that holds a Secret or a template a walk cannot see into; one rendering a ConfigMap stays readable', async () => {
    const dir = await tempDir();
    const { store, inner } = await openAt(dir);
    const manifest = (name: string, template: unknown): KubeObject => ({ apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Manifest', metadata: { name, namespace: 'clusternet-abc' }, template });
    const raw = Buffer.from(JSON.stringify(secret())).toString('base64');
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'secret' }, manifest('secret', secret()));
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'list' }, manifest('list', { apiVersion: 'v1', kind: 'List', metadata: { name: 'l' }, items: [configMap, secret()] }));
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'raw' }, manifest('raw', raw));
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'none' }, manifest('none', undefined));
    await store.put('Manifest', { namespace: 'clusternet-abc', name: 'cfg' }, manifest('cfg', configMap));
    for (const name of ['secret', 'list', 'raw', 'none']) expect(Object.keys((await inner.get('Manifest', { namespace: 'clusternet-abc', name }))!)).toEqual(['sealed']);
    expect((await inner.get('Manifest', { namespace: 'clusternet-abc', name: 'cfg' }))?.template).toEqual(configMap);
    expect((await store.get('Manifest', { namespace: 'clusternet-abc', name: 'raw' }))?.template).toBe(raw);
    // Descriptions carry raw bytes (spec.raw): always sealed.
    await store.put('Description', { namespace: 'app', name: 'd' }, { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Description', metadata: { name: 'd', namespace: 'app' }, spec: { raw: [] } });
    expect(Object.keys((await inner.get('Description', { namespace: 'app', name: 'd' }))!)).toEqual(['sealed']);
  });

  it('refuses to open a value sealed with another key (KEY_MISMATCH) and keeps plain objects readable', async () => {
    const dir = await tempDir();
    const first = await openAt(dir);
    await first.store.put('Feed', secretKey, secret());
    await first.store.put('Feed', configMapKey, configMap);
    await first.store.close();
    await writeFile(join(dir, 'secret-key'), randomBytes(32), { mode: 0o600 });

    const { store } = await openAt(dir);
    await expect(store.get('Feed', secretKey)).rejects.toMatchObject({ code: ErrorCode.SealKeyMismatch });
    await expect(store.list('Feed')).rejects.toMatchObject({ code: ErrorCode.SealKeyMismatch });
    expect((await store.get('Feed', configMapKey))?.data).toEqual({ visible });
  });

  it('refuses a sealed value with a flipped byte, or moved onto another object (TAMPERED)', async () => {
    const dir = await tempDir();
    const { store, inner } = await openAt(dir);
    await store.put('Feed', secretKey, secret());
    const sealed = (await inner.get('Feed', secretKey)) as unknown as { sealed: string };
    expect(Object.keys(sealed)).toEqual(['sealed']);

    const bytes = Buffer.from(sealed.sealed, 'base64');
    bytes[bytes.length >> 1]! ^= 0x01;
    await inner.put('Feed', secretKey, { sealed: bytes.toString('base64') } as never);
    await expect(store.get('Feed', secretKey)).rejects.toMatchObject({ code: ErrorCode.SealTampered });

    const other: FeedKey = { ...secretKey, name: 'db2' };
    await store.put('Feed', other, secret('db2'));
    const moved = await inner.get('Feed', other);
    await inner.put('Feed', { ...secretKey, name: 'db3' }, moved!);
    await expect(store.get('Feed', { ...secretKey, name: 'db3' })).rejects.toMatchObject({ code: ErrorCode.SealTampered });
  });

  it('refuses a key file others may read, of the wrong length, a symlink, or missing while sealed data exists', async () => {
    const dir = await tempDir();
    const first = await openAt(dir);
    await first.store.put('Feed', secretKey, secret());
    await first.store.close();
    const keyFile = join(dir, 'secret-key');

    await chmod(keyFile, 0o640);
    await expect(openAt(dir)).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInsecure });
    await chmod(keyFile, 0o600);

    const good = await readFile(keyFile);
    await writeFile(keyFile, good.subarray(0, 31), { mode: 0o600 });
    await expect(openAt(dir)).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInvalid });

    await writeFile(join(dir, 'real-key'), good, { mode: 0o600 });
    await rm(keyFile);
    await symlink(join(dir, 'real-key'), keyFile);
    await expect(openAt(dir)).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInvalid });

    await rm(keyFile);
    await expect(openAt(dir)).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInvalid });
    await expect(stat(keyFile)).rejects.toMatchObject({ code: 'ENOENT' });

    await writeFile(keyFile, good, { mode: 0o600 });
    const { store } = await openAt(dir);
    expect((await store.get('Feed', secretKey))?.stringData).toEqual({ password });
  });
});

describe('SealKey', () => {
  it('seals with a fresh nonce each time and opens only with the same associated data', () => {
    const key = SealKey.generate();
    const a = key.seal(Buffer.from('hello'), Buffer.from('Feed\0a'));
    const b = key.seal(Buffer.from('hello'), Buffer.from('Feed\0a'));
    expect(a.equals(b)).toBe(false);
    expect(a.length).toBe(1 + 4 + 12 + 5 + 16);
    expect(key.open(a, Buffer.from('Feed\0a')).toString()).toBe('hello');
    expect(() => key.open(a, Buffer.from('Feed\0b'))).toThrow(expect.objectContaining({ code: ErrorCode.SealTampered }));
    expect(() => key.open(a.subarray(0, 20))).toThrow(expect.objectContaining({ code: ErrorCode.SealTampered }));
    const future = Buffer.from(a);
    future[0] = 2;
    expect(() => key.open(future, Buffer.from('Feed\0a'))).toThrow(expect.objectContaining({ code: ErrorCode.SealUnsupported }));
    expect(() => SealKey.generate().open(a, Buffer.from('Feed\0a'))).toThrow(expect.objectContaining({ code: ErrorCode.SealKeyMismatch }));
  });

  it('creates a key file only when allowed, 0600 and 32 bytes, and loads the same key again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hawser-sealkey-'));
    try {
      const path = join(dir, 'secret-key');
      await expect(loadOrCreateSealKey(path, () => false)).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInvalid });
      const created = await loadOrCreateSealKey(path);
      expect(created.created).toBe(true);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      const again = await loadOrCreateSealKey(path, () => false);
      expect(again.created).toBe(false);
      expect(again.key.idHex).toBe(created.key.idHex);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('startHub and the secret key', () => {
  it('creates <data-dir>/secret-key (0600) on first start, keeps it on the next, and refuses to start with a key others may read', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'hawser-hubkey-'));
    const options = { dataDir, listenAddress: '127.0.0.1:0', apiAddress: '127.0.0.1:0', bootstrapTokens: ['abcdef.0123456789abcdef'] };
    try {
      const first = await startHub(options, { logger: silentLogger });
      await first.stop();
      const keyFile = join(dataDir, 'secret-key');
      expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
      const key = await readFile(keyFile);
      const second = await startHub(options, { logger: silentLogger });
      await second.stop();
      expect((await readFile(keyFile)).equals(key)).toBe(true);
      await chmod(keyFile, 0o644);
      await expect(startHub(options, { logger: silentLogger })).rejects.toMatchObject({ code: ErrorCode.SecretKeyFileInsecure });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
