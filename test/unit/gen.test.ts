import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// src/gen must be exactly what buf and ts-proto generate from proto/.

const root = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else out.push(p);
  }
  return out.sort();
}

describe('generated code', () => {
  it('src/gen matches what proto/ generates', { timeout: 120_000 }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'hawser-gen-'));
    try {
      await run(join(root, 'node_modules', '.bin', 'buf'), ['generate', '--output', out], { cwd: root });
      const generated = join(out, 'src', 'gen');
      const committed = join(root, 'src', 'gen');
      const want = (await files(generated)).map((f) => relative(generated, f));
      const have = (await files(committed)).map((f) => relative(committed, f));
      expect(have).toEqual(want);
      expect(want.length).toBeGreaterThan(0);
      for (const f of want) {
        expect(await readFile(join(committed, f), 'utf8'), `src/gen/${f} differs from buf generate`).toBe(
          await readFile(join(generated, f), 'utf8'),
        );
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
