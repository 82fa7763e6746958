import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffCeilingMs } from '../../src/tunnel/index.js';
import { type KubeCluster, type ManagedProcess, startToxiproxy, type Toxiproxy, type ToxiproxyProxy } from '../../src/testkit/index.js';
import { hasUnreachableTaint, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// A bad link, made by a real toxiproxy between agent and hub.

describe('link cut past the lease, and reconnect backoff', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let toxi: Toxiproxy;

  beforeAll(async () => {
    bed = await TestBed.create('link');
    [kube, toxi] = await Promise.all([bed.kube('edge-link'), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker })]);
    hub = await bed.hub(['--auto-approve']);
  });

  afterAll(async () => {
    await toxi?.stop();
    await bed?.close();
  });

  async function agentThrough(proxy: ToxiproxyProxy, name: string, extra: string[] = []): Promise<ManagedProcess> {
    const args = [
      '--cluster-lease-duration=3s',
      '--cluster-status-update-frequency=1s',
      '--reconnect-period=200ms',
      '--max-reconnect-period=1s',
      '--register-timeout=2s',
      '--keepalive-time=1s',
      '--keepalive-timeout=1s',
      ...extra,
    ];
    return bed.agent(name, hub, kube, args, proxy.listen);
  }

  it('proxy disabled: Ready turns Unknown with the unreachable taint; restored: both clear', async () => {
    const proxy = await toxi.createProxy('hub-cut', hub.tunnel);
    const agent = await agentThrough(proxy, 'edge-cut');
    await until('edge-cut ready', async () => readyStatus(await hub.cluster('edge-cut')) === 'True');
    const expiriesBefore = await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-cut' });

    await proxy.disable();
    const cut = await until('edge-cut unknown', async () => {
      const c = await hub.cluster('edge-cut');
      return readyStatus(c) === 'Unknown' ? c : undefined;
    });
    expect(hasUnreachableTaint(cut)).toBe(true);
    expect(cut.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('ClusterStatusUnknown');
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-cut' })).toBe(expiriesBefore + 1);
    expect(await hub.metric('hawser_cluster_ready', { cluster: 'edge-cut' })).toBe(-1);

    await proxy.enable();
    const back = await until('edge-cut ready again', async () => {
      const c = await hub.cluster('edge-cut');
      return readyStatus(c) === 'True' && !hasUnreachableTaint(c) ? c : undefined;
    });
    expect(back.spec.taints).toEqual([]);
    expect(await hub.metric('hawser_cluster_ready', { cluster: 'edge-cut' })).toBe(1);
    await agent.stop();
  });

  it('a stalled link (timeout toxic) expires the lease; the agent notices, redials and recovers', async () => {
    const proxy = await toxi.createProxy('hub-stall', hub.tunnel);
    const agent = await agentThrough(proxy, 'edge-stall');
    await until('edge-stall ready', async () => readyStatus(await hub.cluster('edge-stall')) === 'True');
    const sessionsBefore = await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-stall' });

    // Data stops both ways but the TCP connection stays open: only heartbeats and pings can tell.
    await proxy.addToxic({ name: 'stall-down', type: 'timeout', stream: 'downstream', attributes: { timeout: 0 } });
    await proxy.addToxic({ name: 'stall-up', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } });
    const stalled = await until('edge-stall unknown', async () => {
      const c = await hub.cluster('edge-stall');
      return readyStatus(c) === 'Unknown' ? c : undefined;
    });
    expect(hasUnreachableTaint(stalled)).toBe(true);
    await until('agent gave up the stalled stream', async () =>
      agent.lines().some((l) => l.includes('"to":"backing-off"') && /HAWSER_HEARTBEAT_TIMEOUT|HAWSER_REGISTRATION_TIMEOUT|HAWSER_UNAVAILABLE/.test(l)),
    );

    await proxy.removeToxic('stall-down');
    await proxy.removeToxic('stall-up');
    await until('edge-stall ready again', async () => {
      const c = await hub.cluster('edge-stall');
      return readyStatus(c) === 'True' && !hasUnreachableTaint(c);
    });
    expect(await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-stall' })).toBeGreaterThan(sessionsBefore);
    await agent.stop();
  });

  it('with pings all but off, heartbeats are the probe: a stalled link is found by an ack deadline', async () => {
    const proxy = await toxi.createProxy('hub-stall-hb', hub.tunnel);
    const agent = await agentThrough(proxy, 'edge-stall-hb', ['--keepalive-time=10m']);
    await until('edge-stall-hb ready', async () => readyStatus(await hub.cluster('edge-stall-hb')) === 'True');
    await proxy.addToxic({ name: 'stall-down', type: 'timeout', stream: 'downstream', attributes: { timeout: 0 } });
    await proxy.addToxic({ name: 'stall-up', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } });
    const gaveUp = await until('agent gave up on a heartbeat without ack', async () =>
      agent.lines().find((l) => l.includes('"to":"backing-off"') && l.includes('HAWSER_HEARTBEAT_TIMEOUT')),
    );
    expect(gaveUp).toMatch(/got no ack from the hub within 1000ms/);
    await proxy.removeToxic('stall-down');
    await proxy.removeToxic('stall-up');
    await until('edge-stall-hb ready again', async () => {
      const c = await hub.cluster('edge-stall-hb');
      return readyStatus(c) === 'True' && !hasUnreachableTaint(c);
    });
    await agent.stop();
  });

  it('reconnect delays over failed dials follow the backoff policy (exponential, jittered, capped)', async () => {
    const proxy = await toxi.createProxy('hub-down', hub.tunnel);
    await proxy.disable();
    const events: Array<{ to: string; time: number; attempt?: number; delayMs?: number }> = [];
    const agent = await agentThrough(proxy, 'edge-backoff', ['--reconnect-period=100ms', '--max-reconnect-period=800ms']);
    agent.onLine((line) => {
      if (!line.startsWith('{')) return;
      const e = JSON.parse(line) as { to?: string; time: number; attempt?: number; delayMs?: number };
      if (e.to === 'connecting' || e.to === 'backing-off') events.push(e as (typeof events)[number]);
    });
    await until('eight failed dials', async () => events.filter((e) => e.to === 'backing-off').length >= 8);
    await proxy.enable();
    await until('edge-backoff ready after the link returns', async () => readyStatus(await hub.cluster('edge-backoff')) === 'True');

    const policy = { baseMs: 100, capMs: 800, stableAfterMs: 60_000 };
    const delays = events.filter((e) => e.to === 'backing-off').map((e) => e.delayMs!);
    delays.slice(0, 8).forEach((d, attempt) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(backoffCeilingMs(policy, attempt));
    });
    // Capped: from the fourth failure on the ceiling is the cap.
    expect(Math.max(...delays)).toBeLessThan(800);
    // Jittered: full jitter does not repeat one value.
    expect(new Set(delays).size).toBeGreaterThan(1);
    // Each redial waits at least the delay it announced.
    const waits = events.slice(0, -1).flatMap((e, i) => (e.to === 'backing-off' && events[i + 1]!.to === 'connecting' ? [{ e, next: events[i + 1]! }] : []));
    expect(waits.length).toBeGreaterThanOrEqual(7);
    for (const { e, next } of waits) expect(next.time - e.time).toBeGreaterThanOrEqual(e.delayMs! - 2);
    await agent.stop();
  });
});
