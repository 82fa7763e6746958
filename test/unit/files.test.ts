import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { boundedText, quoteBounded } from '../../src/api/index.js';
import { ensurePrivateDir, writeFileAtomic } from '../../src/cache/index.js';


describe('writeFileAtomic', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hawser-files-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('replaces the file whole with mode 0600 and leaves no temp file', async () => {
    const path = join(dir, 'secret');
    await writeFile(path, 'old', { mode: 0o644 });
    await writeFileAtomic(path, 'new');
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['secret']);
  });

  it('fails with the OS error, leaving nothing, when the directory is missing', async () => {
    const path = join(dir, 'missing-dir', 'secret');
    await expect(writeFileAtomic(path, 'x')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('honours an explicit mode', async () => {
    const path = join(dir, 'ca.crt');
    await writeFileAtomic(path, 'pem', { mode: 0o644 });
    expect((await stat(path)).mode & 0o777).toBe(0o644);
  });
});

describe('ensurePrivateDir', () => {
  it('creates a 0700 directory and narrows an existing wide one', async () => {
    const base = await mkdtemp(join(tmpdir(), 'hawser-dir-'));
    try {
      const dir = join(base, 'a', 'b');
      await ensurePrivateDir(dir);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      const wide = join(base, 'wide');
      await ensurePrivateDir(wide);
      const { chmod } = await import('node:fs/promises');
      await chmod(wide, 0o755);
      await ensurePrivateDir(wide);
      expect((await stat(wide)).mode & 0o777).toBe(0o700);
      await writeFile(join(base, 'file'), '');
      await expect(ensurePrivateDir(join(base, 'file'))).rejects.toThrow();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('quoteBounded', () => {
  it('quotes short values whole and long values bounded with their length', () => {
    expect(quoteBounded('edge-1')).toBe('"edge-1"');
    const long = 'x'.repeat(1_000_000);
    const q = quoteBounded(long);
    expect(q.length).toBeLessThan(300);
    expect(q).toContain('(1000000 characters)');
    expect(quoteBounded('a"b')).toBe('"a\\"b"');
  });
});

describe('boundedText', () => {
  it('keeps short text and cuts long text with its length', () => {
    expect(boundedText('hub says no')).toBe('hub says no');
    expect(boundedText('y'.repeat(5000), 100)).toBe(`${'y'.repeat(100)}… (5000 characters)`);
  });
});
