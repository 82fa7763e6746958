import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeCluster } from '../../src/testkit/index.js';
import { hawser, type HubProcess, jsonLines, readyStatus, TestBed, until } from './harness.js';

// The hawser command as an operator types it, against a running hub.

describe('hawser CLI', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;

  beforeAll(async () => {
    bed = await TestBed.create('cli');
    kube = await bed.kube('edge-approve');
    // No --auto-approve: registration waits for an operator.
    hub = await bed.hub();
  });

  afterAll(() => bed?.close());

  it('a registration waits for `hawser approve`, then the agent becomes Ready on the same stream', async () => {
    const agent = await bed.agent('edge-approve', hub, kube, ['--cluster-status-update-frequency=1s']);
    await agent.waitFor(/hawser approve edge-approve/, { timeoutMs: 30_000, what: 'agent told to wait for approval' });
    expect(await hub.clusters()).toEqual([]);
    const pending = await hawser(['get', 'clusterregistrationrequests', `--hub=${hub.apiUrl}`]);
    expect(pending.stdout).toMatch(/hawser-[0-9a-f-]{36}\s+edge-approve\s+[0-9a-f-]{36}\s+Pending/);

    const approved = await hawser(['approve', 'edge-approve'], { HAWSER_HUB: hub.apiUrl });
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/approved \(cluster edge-approve, namespace hawser-[0-9a-f]{8}\)/);
    await until('edge-approve ready', async () => readyStatus(await hub.cluster('edge-approve')) === 'True');
    // Who approved what, and when, in one audit line.
    const audit = jsonLines(hub.proc).find((l) => l.audit === true && l.action === 'approve' && l.target === 'edge-approve');
    expect(audit).toMatchObject({ user: 'harness-admin', role: 'admin', outcome: 'ok' });
    expect(typeof audit?.time).toBe('number');
    // Approved on the same stream: the agent never had to redial.
    expect(agent.lines().filter((l) => l.includes('"to":"backing-off"'))).toEqual([]);
    const requests = await hawser(['get', 'clsrr', `--hub=${hub.apiUrl}`]);
    expect(requests.stdout).toMatch(/edge-approve\s+[0-9a-f-]{36}\s+Approved/);
  });

  it('approving an unknown name fails with a clear error', async () => {
    const r = await hawser(['approve', 'no-such-cluster', `--hub=${hub.apiUrl}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_NOT_FOUND');
    expect(r.stderr).toContain('"no-such-cluster"');
  });

  it('usage errors name the problem and exit 2', async () => {
    const unknown = await hawser(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badOutput = await hawser(['get', 'clusters', '-o', 'xml', `--hub=${hub.apiUrl}`]);
    expect(badOutput.code).toBe(2);
    expect(badOutput.stderr).toContain('"xml"');
    const badFlag = await hawser(['hub', '--no-such-flag']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('--no-such-flag');
    const badDelete = await hawser(['delete', 'pods', 'x']);
    expect(badDelete.code).toBe(2);
    expect(badDelete.stderr).toContain('cluster NAME');
    const badDeny = await hawser(['deny']);
    expect(badDeny.code).toBe(2);
    const badDuration = await hawser(['agent', '--cluster-reg-name=x', '--reconnect-period=10']);
    expect(badDuration.code).toBe(2);
    expect(badDuration.stderr).toContain('--reconnect-period');
    const badBool = await hawser(['agent', '--cluster-reg-name=x', '--enable-compression=maybe']);
    expect(badBool.code).toBe(2);
    expect(badBool.stderr).toContain('--enable-compression');
    const badGate = await hawser(['agent', '--cluster-reg-name=x', '--feature-gates=Bogus=true']);
    expect(badGate.code).toBe(1);
    expect(badGate.stderr).toContain('HAWSER_INVALID_OPTION: feature-gates: unknown gate "Bogus"');
  });

  it('every command has --help', async () => {
    for (const cmd of ['hub', 'agent', 'approve', 'deny', 'apply', 'delete', 'describe', 'get', 'rotate', 'demo']) {
      const r = await hawser([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Usage: hawser ${cmd}`));
    }
    const top = await hawser(['--help']);
    expect(top.stdout).toMatch(/Commands:/);
  });

  it('reports an unreachable hub clearly', async () => {
    const r = await hawser(['get', 'clusters', '--hub=http://127.0.0.1:9']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_HUB_UNREACHABLE');
    expect(r.stderr).toContain('http://127.0.0.1:9');
  });
});
