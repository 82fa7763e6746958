import { backoffCeilingMs } from '../src/tunnel/index.js';
import { until } from '../test/integration/harness.js';
import { between } from './rng.js';
import { pause, type RunOptions, type ScenarioRun } from './world.js';

// The scenarios, one row each. A scenario starts its sync, injects its faults
// while the sync runs, and leaves the rest to ScenarioRun.finish(): lift the
// faults, wait for convergence, measure the invariants. Expectations of its
// own (a lease that must expire, a backoff that must hold) go through
// run.expect, so a miss fails the row and says what it was.
//
// The link tests that were test/integration/link.test.ts are here:
// lease (proxy disabled past the lease), timeout and timeout-heartbeat (a
// stalled link, found by pings or by a heartbeat's ack deadline) and
// backoff (failed dials follow the policy), with every assertion they had.

export interface Scenario {
  id: string;
  options?: RunOptions;
  run(r: ScenarioRun): Promise<void>;
}

/** Waits until the hub shows the cluster Unknown with the unreachable taint (its lease ran out). */
async function leaseExpired(r: ScenarioRun, what: string): Promise<void> {
  const c = await until(`${r.id}: ${what}`, async () => {
    const s = await r.clusterReady();
    return s.ready === 'Unknown' ? s : undefined;
  });
  r.expect(c.tainted, `${what}: Unknown without the unreachable taint`);
}

/** Link cuts (proxy disabled: connections drop, dials refused) at random times. */
async function cutRounds(r: ScenarioRun, rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await pause(between(r.random, r.scale.cutUpMs / 3, r.scale.cutUpMs));
    const down = Math.round(between(r.random, r.scale.cutDownMs / 2, r.scale.cutDownMs));
    await r.proxy.disable();
    await pause(down);
    await r.proxy.enable();
    r.faults.push(`cut ${down}ms`);
  }
}

/** One toxic, added for a while at a random moment of each of `rounds` syncs (each a new desired state). */
async function toxicRounds(r: ScenarioRun, rounds: number, toxic: () => { type: string; attributes: Record<string, number> }, label: (a: Record<string, number>) => string): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await r.applyDesired();
    await pause(between(r.random, 0, 800));
    const t = toxic();
    await r.proxy.addToxic({ name: `${t.type}-${i}`, type: t.type, stream: 'downstream', attributes: t.attributes });
    await pause(r.scale.cutDownMs);
    await r.proxy.removeToxic(`${t.type}-${i}`);
    r.faults.push(label(t.attributes));
  }
}

/** The number of new desired states a repeating scenario applies (each a new generation of every object). */
function generations(r: ScenarioRun): number {
  return r.scale.rounds;
}

export const scenarios: Scenario[] = [
  {
    id: 'latency',
    async run(r) {
      const ms = r.scale.name === 'large' ? 300 : 100;
      await r.proxy.addToxic({ name: 'latency-down', type: 'latency', stream: 'downstream', attributes: { latency: ms, jitter: ms / 2 } });
      await r.proxy.addToxic({ name: 'latency-up', type: 'latency', stream: 'upstream', attributes: { latency: ms, jitter: ms / 2 } });
      r.faults.push(`latency ${ms}±${ms / 2}ms both ways`);
      await r.applyDesired();
      await until(`${r.id} converged under latency`, async () => (await r.converged()) || undefined, r.scale.convergeTimeoutMs);
    },
  },
  {
    id: 'bandwidth',
    async run(r) {
      const rate = r.scale.name === 'large' ? 32 : 64;
      // First in the chain: the latency toxic would buffer what bandwidth holds back.
      await r.proxy.addToxic({ name: 'bandwidth-down', type: 'bandwidth', stream: 'downstream', attributes: { rate } });
      await r.proxy.addToxic({ name: 'latency-down', type: 'latency', stream: 'downstream', attributes: { latency: 50 } });
      r.faults.push(`bandwidth ${rate}KB/s + latency 50ms down`);
      await r.applyDesired();
      await until(`${r.id} converged at ${rate} KB/s`, async () => (await r.converged()) || undefined, r.scale.convergeTimeoutMs);
      const ready = await r.clusterReady();
      r.expect(ready.ready === 'True', `the lease expired during a ${rate} KB/s sync (Ready ${ready.ready})`);
    },
  },
  {
    id: 'timeout',
    async run(r) {
      await r.applyDesired();
      const sessionsBefore = await r.hubMetric('hawser_hub_sessions_total', { cluster: r.clusterName });
      const statesBefore = r.agentStates.length;
      // Data stops both ways but the TCP connection stays open: only heartbeats and pings can tell.
      await r.proxy.addToxic({ name: 'stall-down', type: 'timeout', stream: 'downstream', attributes: { timeout: 0 } });
      await r.proxy.addToxic({ name: 'stall-up', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } });
      r.faults.push('timeout (stall) both ways past the lease');
      await leaseExpired(r, 'stalled link');
      await until(`${r.id}: agent gave up the stalled stream`, async () =>
        r.agentStates.slice(statesBefore).some((e) => e.to === 'backing-off' && /HAWSER_HEARTBEAT_TIMEOUT|HAWSER_REGISTRATION_TIMEOUT|HAWSER_UNAVAILABLE/.test(JSON.stringify(e))),
      );
      await r.proxy.removeToxic('stall-down');
      await r.proxy.removeToxic('stall-up');
      await r.waitReady(`${r.id}: Ready again after the stall`);
      r.expect((await r.hubMetric('hawser_hub_sessions_total', { cluster: r.clusterName })) > sessionsBefore, 'no new session after the stall');
    },
  },
  {
    id: 'timeout-heartbeat',
    // With pings all but off, heartbeats are the probe: a stalled link is found by an ack deadline.
    // The deadline runs from when a heartbeat has left: with other traffic on the stalled stream (sync,
    // proxied requests) the HTTP/2 window can hold it back, and the missed-heartbeat limit finds the
    // stall instead (the timeout row). Here, as in the link test it was, the link is idle: the stall comes
    // right after Ready, and the desired state waits at the hub until the link is back.
    options: { agentArgs: ['--keepalive-time=10m'], proxyLoad: false },
    async run(r) {
      const statesBefore = r.agentStates.length;
      await r.proxy.addToxic({ name: 'stall-down', type: 'timeout', stream: 'downstream', attributes: { timeout: 0 } });
      await r.proxy.addToxic({ name: 'stall-up', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } });
      r.faults.push('timeout (stall) both ways, pings off');
      // A new desired state waits at the hub for the link to return.
      await r.applyDesired();
      const gaveUp = await until(`${r.id}: agent gave up on a heartbeat without ack`, async () =>
        r.agentStates.slice(statesBefore).find((e) => e.to === 'backing-off' && JSON.stringify(e).includes('HAWSER_HEARTBEAT_TIMEOUT')),
      );
      // Which heartbeat check fires depends on the machine's load: the ack deadline (1 s after a heartbeat has
      // left) or, when the heartbeat's send has not drained, the missed-heartbeat limit (3 intervals).
      r.expect(/got no ack from the hub within 1000ms|no heartbeat ack from the hub for \d+ms/.test(JSON.stringify(gaveUp)), `the give-up names no heartbeat check: ${JSON.stringify(gaveUp).slice(0, 300)}`);
      await r.proxy.removeToxic('stall-down');
      await r.proxy.removeToxic('stall-up');
      await r.waitReady(`${r.id}: Ready again after the stall`);
    },
  },
  {
    id: 'reset-peer',
    async run(r) {
      await toxicRounds(
        r,
        r.scale.rounds,
        () => ({ type: 'reset_peer', attributes: { timeout: Math.round(between(r.random, 0, 500)) } }),
        (a) => `reset_peer ${a['timeout']}ms`,
      );
    },
  },
  {
    id: 'slicer',
    async run(r) {
      await r.proxy.addToxic({ name: 'slicer-down', type: 'slicer', stream: 'downstream', attributes: { average_size: 64, size_variation: 48, delay: 200 } });
      await r.proxy.addToxic({ name: 'slicer-up', type: 'slicer', stream: 'upstream', attributes: { average_size: 16, size_variation: 12, delay: 200 } });
      r.faults.push('slicer 64±48 B down, 16±12 B up, 200µs apart');
      await r.applyDesired();
      await until(`${r.id} converged through the slicer`, async () => (await r.converged()) || undefined, r.scale.convergeTimeoutMs);
    },
  },
  {
    id: 'limit-data',
    async run(r) {
      await toxicRounds(
        r,
        r.scale.rounds,
        () => ({ type: 'limit_data', attributes: { bytes: Math.round(between(r.random, 2_000, 40_000)) } }),
        (a) => `limit_data ${a['bytes']}B`,
      );
    },
  },
  {
    id: 'lease',
    async run(r) {
      // Mid-sync: the agent keeps applying what it holds; nothing it applied may be pruned meanwhile (the watch counts deletes).
      await r.applyDesired();
      const expiriesBefore = await r.hubMetric('hawser_cluster_lease_expiries_total', { cluster: r.clusterName });
      await r.proxy.disable();
      r.faults.push('link down past the lease');
      const cut = await until(`${r.id}: Unknown`, async () => {
        const c = await r.hub.cluster(r.clusterName);
        return c?.status.conditions.find((x) => x.type === 'Ready')?.status === 'Unknown' ? c : undefined;
      });
      r.expect(cut.spec.taints.some((t) => t.key === 'node.clusternet.io/unreachable' && t.effect === 'NoSchedule'), 'Unknown without the unreachable taint');
      r.expect(cut.status.conditions.find((c) => c.type === 'Ready')?.reason === 'ClusterStatusUnknown', 'Ready reason is not ClusterStatusUnknown');
      r.expect((await r.hubMetric('hawser_cluster_lease_expiries_total', { cluster: r.clusterName })) === expiriesBefore + 1, 'lease expiries did not rise by one');
      r.expect((await r.hubMetric('hawser_cluster_ready', { cluster: r.clusterName })) === -1, 'hawser_cluster_ready is not -1 while Unknown');
      await r.proxy.enable();
      await r.waitReady(`${r.id}: Ready again`);
      const back = await r.hub.cluster(r.clusterName);
      r.expect(back?.spec.taints.length === 0, `taints left after the link returned: ${JSON.stringify(back?.spec.taints)}`);
      r.expect((await r.hubMetric('hawser_cluster_ready', { cluster: r.clusterName })) === 1, 'hawser_cluster_ready is not 1 once Ready');
    },
  },
  {
    id: 'backoff',
    options: { linkDown: true, agentArgs: ['--reconnect-period=100ms', '--max-reconnect-period=800ms'] },
    async run(r) {
      r.faults.push('hub unreachable at start: 8 failed dials');
      await until(`${r.id}: eight failed dials`, async () => r.agentStates.filter((e) => e.to === 'backing-off').length >= 8);
      await r.proxy.enable();
      await r.waitReady(`${r.id}: Ready after the link returns`);
      const events = r.agentStates.filter((e) => e.to === 'connecting' || e.to === 'backing-off');
      const policy = { baseMs: 100, capMs: 800, stableAfterMs: 60_000 };
      const delays = events.filter((e) => e.to === 'backing-off').map((e) => e.delayMs!);
      delays.slice(0, 8).forEach((d, attempt) => {
        r.expect(d >= 0 && d < backoffCeilingMs(policy, attempt), `dial ${attempt}: delay ${d}ms outside [0, ${backoffCeilingMs(policy, attempt)})`);
      });
      // Capped: from the fourth failure on the ceiling is the cap.
      r.expect(Math.max(...delays) < 800, `a delay of ${Math.max(...delays)}ms is past the 800ms cap`);
      // Jittered: full jitter does not repeat one value.
      r.expect(new Set(delays).size > 1, 'every delay was the same: no jitter');
      // Each redial waits at least the delay it announced.
      const waits = events.slice(0, -1).flatMap((e, i) => (e.to === 'backing-off' && events[i + 1]!.to === 'connecting' ? [{ e, next: events[i + 1]! }] : []));
      r.expect(waits.length >= 7, `only ${waits.length} redials seen`);
      for (const { e, next } of waits) r.expect(next.time - e.time >= e.delayMs! - 2, `a redial came ${next.time - e.time}ms after announcing ${e.delayMs}ms`);
      // Then the sync, on the link that came back.
      await r.applyDesired();
    },
  },
  {
    id: 'cuts',
    async run(r) {
      // A link cut every few seconds during a sync of hundreds of objects; a new desired state each round keeps the sync busy.
      await r.applyDesired();
      for (let g = 0; g < generations(r); g++) {
        await cutRounds(r, 2);
        await r.applyDesired();
      }
      await cutRounds(r, 2);
    },
  },
  {
    id: 'agent-kill',
    async run(r) {
      // kill -9 of the agent at random points of the sync: after a random share of a new desired state went out.
      await r.applyDesired();
      for (let i = 0; i < r.scale.rounds; i++) {
        const at = Math.round(between(r.random, 0, 1_500));
        await pause(at);
        await r.killAgent();
        r.faults.push(`SIGKILL agent +${at}ms`);
        await r.applyDesired();
      }
    },
  },
  {
    id: 'agent-stop',
    async run(r) {
      await r.applyDesired();
      for (let i = 0; i < Math.max(1, Math.floor(r.scale.rounds / 2)); i++) {
        await pause(between(r.random, 0, 1_000));
        r.agent.kill('SIGSTOP');
        // Past the lease: the hub marks the cluster Unknown; on SIGCONT the agent finds its stream dead and redials.
        await leaseExpired(r, 'agent stopped');
        r.agent.kill('SIGCONT');
        r.faults.push('SIGSTOP agent past the lease');
        await r.waitReady(`${r.id}: Ready after SIGCONT`);
        await r.applyDesired();
      }
    },
  },
  {
    id: 'hub-kill',
    async run(r) {
      await r.applyDesired();
      for (let i = 0; i < Math.max(1, Math.floor(r.scale.rounds / 2)); i++) {
        const at = Math.round(between(r.random, 0, 1_000));
        await pause(at);
        await r.killHub();
        r.faults.push(`SIGKILL hub +${at}ms, restart on its data dir`);
        await r.waitReady(`${r.id}: Ready after the hub restarted`);
        await r.applyDesired();
      }
    },
  },
  {
    id: 'hub-stop',
    async run(r) {
      await r.applyDesired();
      await pause(between(r.random, 0, 1_000));
      const statesBefore = r.agentStates.length;
      r.hub.proc.kill('SIGSTOP');
      // The agent finds no acks past its deadline and redials; the hub, frozen, cannot answer.
      // Past the 3 s lease: the agent gave up, and dialled the frozen hub twice more in vain.
      await until(`${r.id}: agent gave up on the frozen hub and redialled in vain`, async () => r.agentStates.slice(statesBefore).filter((e) => e.to === 'backing-off').length >= 3);
      r.hub.proc.kill('SIGCONT');
      r.faults.push('SIGSTOP hub past the lease');
      await r.waitReady(`${r.id}: Ready after the hub resumed`);
      await r.applyDesired();
    },
  },
];
