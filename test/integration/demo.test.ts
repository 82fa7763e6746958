import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startProcess, Tracker } from '../../src/testkit/index.js';
import { hawser, hawserBin, tempDir } from './harness.js';

// The main job (README's first command runs `hawser demo`): it brings up
// clusters, a hub and agents, and Ctrl-C takes every one of them down.

const run = promisify(execFile);

async function processesMentioning(text: string): Promise<string[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,stat=,args=']);
  return stdout
    .split('\n')
    .filter((l) => l.includes(text) && !/^\s*\d+\s+Z/.test(l));
}

describe('hawser demo (the main job)', () => {
  const tracker = new Tracker();
  let dir: Awaited<ReturnType<typeof tempDir>>;

  afterAll(async () => {
    await tracker.closeAll();
    await tracker.assertNoLeaks();
    await dir?.remove();
  });

  it('starts a hub and agents beside real kube-apiservers and stops them all on SIGINT', async () => {
    dir = await tempDir('demo');
    const dataDir = `${dir.path}/demo`;
    const listen = await freePort({ tracker });
    const api = await freePort({ tracker });
    const demo = await startProcess({
      name: 'demo',
      command: process.execPath,
      args: [hawserBin, 'demo', '--clusters=2', `--data-dir=${dataDir}`, `--listen=127.0.0.1:${listen}`, `--api-address=127.0.0.1:${api}`],
      logDir: dir.path,
      tracker,
    });
    await demo.waitFor(/Press Ctrl-C to stop everything/, { timeoutMs: 150_000, what: 'demo running' });
    expect(demo.lines().join('\n')).toMatch(/edge-1\s+[0-9a-f-]{36}\s+Dual\s+v1\.\d+\.\d+\s+ok\s+True/);

    const table = await hawser(['get', 'clusters'], { HAWSER_HUB: `127.0.0.1:${api}` });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^edge-2\s+/m);
    expect((await processesMentioning(dataDir)).length).toBeGreaterThanOrEqual(5);

    demo.kill('SIGINT');
    const exit = await demo.exited;
    expect(exit.code).toBe(0);
    expect(demo.lines().join('\n')).toContain('stopped.');
    expect(await processesMentioning(dataDir)).toEqual([]);
  });
});
