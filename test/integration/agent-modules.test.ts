import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hawserBin, repoRoot, tempDir } from './harness.js';

// `hawser agent` runs in edge clusters where memory is scarce (issue 7 §6: ≤ 70 MB):
// it must load none of the hub's modules, nor packages only the hub or the
// operator's commands need. Checked on the compiled CLI as a user runs it: every
// module the process loads (ESM through a load hook, CommonJS from require.cache)
// is written to a file. `--help` returns after the command's module graph is loaded.

const run = promisify(execFile);

const hooks = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.HAWSER_MODULE_LIST, url + '\\n');
  return next(url, context);
}
`;
const preload = `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
register(new URL('./hooks.mjs', import.meta.url));
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => appendFileSync(process.env.HAWSER_MODULE_LIST, Object.keys(cache).map((f) => 'file://' + f + '\\n').join('')));
`;

describe('modules a command loads', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    dir = await tempDir('modules');
    await writeFile(join(dir.path, 'hooks.mjs'), hooks);
    await writeFile(join(dir.path, 'preload.mjs'), preload);
  });
  afterAll(() => dir?.remove());

  /** Paths relative to the repository of every module `hawser ARGS` loaded. */
  async function loadedModules(args: string[]): Promise<string[]> {
    const list = join(dir.path, `${args[0]}.txt`);
    await run(process.execPath, ['--import', pathToFileURL(join(dir.path, 'preload.mjs')).href, hawserBin, ...args], {
      env: { ...process.env, HAWSER_MODULE_LIST: list },
    });
    const root = pathToFileURL(repoRoot).href + '/';
    return [...new Set((await readFile(list, 'utf8')).split('\n').filter((u) => u.startsWith(root)).map((u) => u.slice(root.length)))];
  }

  const hubModules = (paths: string[]) => paths.filter((p) => p.startsWith('dist/hub/'));
  const packages = (paths: string[]) => new Set(paths.flatMap((p) => /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(p)?.[1] ?? []));

  it('`hawser agent` loads no module of src/hub, nor prom-client, the packages of apply and render, yaml or valibot', async () => {
    const loaded = await loadedModules(['agent', '--help']);
    expect(loaded).toContain('dist/agent/index.js');
    expect(hubModules(loaded)).toEqual([]);
    const used = packages(loaded);
    expect(used).toContain('@grpc/grpc-js');
    for (const name of ['prom-client', '@peculiar/x509', 'rfc6902', 'tiny-merge-patch', '@kubernetes/client-node', 'yaml', 'valibot']) expect(used).not.toContain(name);
  });

  it('the probe sees what `hawser hub` loads: the hub and prom-client', async () => {
    const loaded = await loadedModules(['hub', '--help']);
    expect(hubModules(loaded)).toContain('dist/hub/index.js');
    expect(packages(loaded)).toContain('prom-client');
  });
});
