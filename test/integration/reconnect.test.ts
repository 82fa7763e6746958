import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type KubeCluster, type ManagedProcess, startTcpRelay, startToxiproxy, type Toxiproxy } from '../../src/testkit/index.js';
import { type HubProcess, readyStatus, startHubProcess, TestBed, until } from './harness.js';

// A link that drops right after every reconnect, and a hub killed outright:
// the agent's waits come from its own log ("agent reconnect wait"), never
// from wall-clock timings.

interface ReconnectWait {
  delayMs: number;
  quickRetry: boolean;
  /** Which rule chose the wait: quick, second, backoff or retry-after. */
  retry: string;
  attempts: number;
  code: string;
}

/** Collects the agent's reconnect waits and ready transitions as they are logged. */
function watchAgent(agent: ManagedProcess) {
  const waits: ReconnectWait[] = [];
  // Lines logged before this call are counted too (read and subscribed in one turn).
  let readies = agent.lines().filter((l) => l.startsWith('{') && l.includes('"to":"ready"')).length;
  agent.onLine((line) => {
    if (!line.startsWith('{')) return;
    const e = JSON.parse(line) as { msg?: string; to?: string } & ReconnectWait;
    if (e.msg === 'agent reconnect wait') waits.push({ delayMs: e.delayMs, quickRetry: e.quickRetry, retry: e.retry, attempts: e.attempts, code: e.code });
    if (e.to === 'ready') readies++;
  });
  return { waits, readies: () => readies };
}

const jitterMs = 1_500;

describe('reconnect after a working link drops', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let toxi: Toxiproxy;

  beforeAll(async () => {
    bed = await TestBed.create('reconnect');
    [kube, toxi] = await Promise.all([bed.kube('edge-reconnect'), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker })]);
  });

  afterAll(async () => {
    await toxi?.stop();
    await bed?.close();
  });

  it('a link cut six times, each right after the agent was back: every wait is a quick retry within the jitter window and no failed dial is counted', async () => {
    const hub: HubProcess = await bed.hub(['--auto-approve']);
    const proxy = await toxi.createProxy('hub-flap', hub.tunnel);
    // The default backoff (10 s base, 5 min cap): a cut treated as a failed dial would show in the waits.
    const agent = await bed.agent(
      'edge-flap',
      hub,
      kube,
      ['--cluster-lease-duration=3s', '--cluster-status-update-frequency=1s', `--reconnect-jitter=${jitterMs}ms`],
      proxy.listen,
    );
    const seen = watchAgent(agent);
    // Agents report the round trip of an acked heartbeat on their next one: with one agent on this
    // hub, two more reports after the agent is ready mean a heartbeat of this session was acked.
    const rttReports = () => hub.metric('hawser_tunnel_rtt_seconds_count');
    const cuts = 6;

    for (let cut = 1; cut <= cuts; cut++) {
      await until(`edge-flap ready before cut ${cut}`, async () => seen.readies() === cut && readyStatus(await hub.cluster('edge-flap')) === 'True');
      const reports = await rttReports();
      await until(`a heartbeat acked before cut ${cut}`, async () => (await rttReports()) >= reports + 2);
      await proxy.disable();
      await proxy.enable();
      await until(`edge-flap back after cut ${cut}`, async () => seen.readies() === cut + 1, 30_000);
    }

    expect(seen.waits).toHaveLength(cuts);
    for (const wait of seen.waits) {
      expect(wait.quickRetry).toBe(true);
      expect(wait.retry).toBe('quick');
      expect(wait.attempts).toBe(0);
      expect(wait.delayMs).toBeGreaterThanOrEqual(0);
      expect(wait.delayMs).toBeLessThan(jitterMs);
    }
    await agent.stop();
    await hub.proc.stop();
  });

  it('a link cut right after each welcome, before any heartbeat ack: three cuts in a row are quick retries with no failed dial counted, the fourth backs off', async () => {
    const hub: HubProcess = await bed.hub(['--auto-approve']);
    const proxy = await toxi.createProxy('hub-welcome-cut', hub.tunnel);
    const agent = await bed.agent(
      'edge-welcome-cut',
      hub,
      kube,
      ['--cluster-lease-duration=3s', '--cluster-status-update-frequency=1s', `--reconnect-jitter=${jitterMs}ms`, '--reconnect-period=2s'],
      proxy.listen,
    );
    const seen = watchAgent(agent);
    await until('edge-welcome-cut ready', async () => seen.readies() === 1 && readyStatus(await hub.cluster('edge-welcome-cut')) === 'True');
    // From now on every frame to the hub takes 2 s: a heartbeat sent on a welcome is
    // still on its way when the cut below lands, so no connection gets an ack.
    await proxy.addToxic({ name: 'slow-up', type: 'latency', stream: 'upstream', attributes: { latency: 2_000 } });
    await proxy.disable();
    await proxy.enable();
    const acksBefore = await hub.metric('hawser_tunnel_rtt_seconds_count');
    for (let cut = 1; cut <= 4; cut++) {
      await until(`edge-welcome-cut welcomed before cut ${cut}`, async () => seen.readies() === cut + 1, 60_000);
      await proxy.disable();
      await proxy.enable();
    }
    await until('the wait after the fourth cut', async () => seen.waits.length >= 5, 30_000);
    // Nothing of these connections was acked: the hub saw no round trip reported.
    expect(await hub.metric('hawser_tunnel_rtt_seconds_count')).toBe(acksBefore);
    // The first wait follows the cut of a connection that was acked (before the toxic).
    const afterWelcomeCuts = seen.waits.slice(1, 5);
    expect(afterWelcomeCuts.map((w) => w.retry)).toEqual(['quick', 'quick', 'quick', 'backoff']);
    expect(afterWelcomeCuts.map((w) => w.attempts)).toEqual([0, 0, 0, 1]);
    for (const wait of afterWelcomeCuts.slice(0, 3)) expect(wait.delayMs).toBeLessThan(jitterMs);
    await agent.stop();
    await hub.proc.stop();
  });

  it('a hub killed with SIGKILL and restarted: the agent is back', async () => {
    const tunnelPort = await freePort({ owner: 'hub tunnel (killed)', tracker: bed.tracker });
    const apiPort = await freePort({ owner: 'hub api (killed)', tracker: bed.tracker });
    const hub = await startHubProcess({
      dataDir: join(bed.dir, 'hub-killed'),
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: ['--auto-approve'],
      tunnelPort,
      apiPort,
    });
    const agent = await bed.agent('edge-killed', hub, kube, [
      '--cluster-lease-duration=3s',
      '--cluster-status-update-frequency=1s',
      '--reconnect-period=1s',
      '--max-reconnect-period=4s',
      `--reconnect-jitter=${jitterMs}ms`,
    ]);
    const seen = watchAgent(agent);
    await until('edge-killed ready', async () => readyStatus(await hub.cluster('edge-killed')) === 'True');
    const reports = await hub.metric('hawser_tunnel_rtt_seconds_count');
    await until('edge-killed heartbeated', async () => (await hub.metric('hawser_tunnel_rtt_seconds_count')) >= reports + 2);
    const readiesBefore = seen.readies();

    hub.proc.kill('SIGKILL');
    await hub.proc.exited;
    await until('the agent noticed the dead hub', async () => seen.waits.length >= 1);
    await hub.proc.restart();
    await until('edge-killed back on the restarted hub', async () => seen.readies() > readiesBefore && readyStatus(await hub.cluster('edge-killed')) === 'True', 90_000);

    // The first wait after the kill was the quick retry (the link had worked); failed dials after it back off.
    expect(seen.waits[0]!.quickRetry).toBe(true);
    expect(seen.waits[0]!.delayMs).toBeLessThan(jitterMs);
    for (const wait of seen.waits.slice(1)) expect(wait.quickRetry).toBe(false);
    await agent.stop();
    await hub.proc.stop();
  });
  it('a hub that stays stopped: quick, second, then backoff whose failed-dial count grows', async () => {
    const hub: HubProcess = await bed.hub(['--auto-approve']);
    const agent = await bed.agent('edge-stopped', hub, kube, [
      '--cluster-lease-duration=3s',
      '--cluster-status-update-frequency=1s',
      '--reconnect-period=1s',
      '--max-reconnect-period=4s',
      '--reconnect-jitter=500ms',
      '--reconnect-second-jitter=1s',
    ]);
    const seen = watchAgent(agent);
    await until('edge-stopped ready', async () => readyStatus(await hub.cluster('edge-stopped')) === 'True');
    const reports = await hub.metric('hawser_tunnel_rtt_seconds_count');
    await until('edge-stopped heartbeated', async () => (await hub.metric('hawser_tunnel_rtt_seconds_count')) >= reports + 2);

    hub.proc.kill('SIGKILL');
    await hub.proc.exited;
    await until('five waits against the dead hub', async () => seen.waits.length >= 5, 60_000);

    expect(seen.waits.slice(0, 5).map((w) => w.retry)).toEqual(['quick', 'second', 'backoff', 'backoff', 'backoff']);
    expect(seen.waits.slice(0, 5).map((w) => w.attempts)).toEqual([0, 0, 1, 2, 3]);
    await agent.stop();
  });

  it('a link down while the agent backs off: one TCP connection per return (the abandoned grpc-js client does not redial)', async () => {
    const hub: HubProcess = await bed.hub(['--auto-approve']);
    const relay = await startTcpRelay(hub.tunnel);
    try {
      const agent = await bed.agent(
        'edge-relay',
        hub,
        kube,
        ['--cluster-lease-duration=3s', '--cluster-status-update-frequency=1s', '--reconnect-jitter=200ms', '--reconnect-second-jitter=200ms', '--reconnect-period=20s'],
        relay.listen,
      );
      const seen = watchAgent(agent);
      await until('edge-relay ready', async () => readyStatus(await hub.cluster('edge-relay')) === 'True');
      const reports = await hub.metric('hawser_tunnel_rtt_seconds_count');
      await until('edge-relay heartbeated', async () => (await hub.metric('hawser_tunnel_rtt_seconds_count')) >= reports + 2);
      expect(relay.connections).toHaveLength(1);

      await relay.down();
      // Down until the agent waits long enough (>= 3 s) that a client left open would redial
      // first (grpc-js retries within about a second): then the link comes back.
      await until('the agent waits at least 3 s', async () => seen.waits.some((w) => w.delayMs >= 3_000), 90_000);
      const readiesBefore = seen.readies();
      await relay.up();
      await until('edge-relay back', async () => seen.readies() > readiesBefore, 60_000);
      const back = await hub.metric('hawser_tunnel_rtt_seconds_count');
      await until('edge-relay heartbeated again', async () => (await hub.metric('hawser_tunnel_rtt_seconds_count')) >= back + 2);

      // The first connection, and the one the agent's own dial opened: nothing in between.
      expect(relay.connections).toHaveLength(2);
      await agent.stop();
    } finally {
      await relay.close();
      await hub.proc.stop();
    }
  });
});
