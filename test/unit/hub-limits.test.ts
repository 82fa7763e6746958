import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultHandshakeAdmission } from '../../src/hub/admission.js';
import type { HubStore } from '../../src/hub/store.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { clusterStatus, FakeAgent, helloFrame, metricValue, rejectedCount, startTestHub, type TestHub, waitFor } from './support.js';

// Every bound the hub keeps is a refusal with a code, counted; time is a ManualClock.

let hub: TestHub;

afterEach(async () => {
  await hub?.close();
});

async function register(name: string) {
  const clusterId = randomUUID();
  const agent = FakeAgent.open(hub);
  await agent.send(helloFrame({ clusterId, token: hub.token, name }));
  const welcome = await agent.expectFrame('welcome');
  return { agent, clusterId, credential: welcome.credential };
}

describe('HubCore heartbeat bounds', () => {
  it('refuses heartbeats faster than the session budget, and only then', async () => {
    hub = await startTestHub({ heartbeats: { capacity: 3, refillPerSecond: 1 } });
    const { agent } = await register('edge-rate');
    for (let i = 0; i < 3; i++) await agent.heartbeat();
    hub.clock.advance(1_000);
    await agent.heartbeat();
    await agent.send({ frame: { $case: 'heartbeat', value: { sequence: 99, sentAtUnixMs: 0, lastRttMs: 0, statusUnchanged: false } } });
    await agent.expectGoodbye(ErrorCode.HeartbeatFlood);
    expect(await rejectedCount(hub.metrics, ErrorCode.HeartbeatFlood)).toBe(1);
  });

  it('refuses a status report over the size bound, naming both sizes', async () => {
    hub = await startTestHub({ maxStatusBytes: 1_024 });
    const { agent } = await register('edge-big');
    await agent.heartbeat(clusterStatus('ok'));
    const big = clusterStatus('ok');
    for (let i = 0; i < 100; i++) big.allocatable[`example.com/resource-${i}`] = '1';
    await agent.send({ frame: { $case: 'heartbeat', value: { sequence: 2, sentAtUnixMs: 0, status: big, lastRttMs: 0, statusUnchanged: false } } });
    const goodbye = await agent.expectGoodbye(ErrorCode.StatusTooLarge);
    expect(goodbye.message).toMatch(/status report of \d+ bytes exceeds the limit of 1024 bytes/);
    expect(await rejectedCount(hub.metrics, ErrorCode.StatusTooLarge)).toBe(1);
    expect((await hub.store.get('ManagedCluster', 'edge-big'))?.status.allocatable).toEqual(clusterStatus('ok').allocatable);
  });
});

describe('HubCore unwelcomed streams', () => {
  it('refuses streams beyond the cap with a retry-after, and admits again once one is welcomed', async () => {
    hub = await startTestHub({ maxUnwelcomedStreams: 2, busyRetryAfterMs: 7_000 });
    const silent = [FakeAgent.open(hub), FakeAgent.open(hub)];
    const third = FakeAgent.open(hub);
    const goodbye = await third.expectGoodbye(ErrorCode.HubBusy);
    expect(goodbye.retryAfterMs).toBe(7_000);
    expect(await rejectedCount(hub.metrics, ErrorCode.HubBusy)).toBe(1);

    await silent[0]!.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-first' }));
    await silent[0]!.expectFrame('welcome');
    const { agent } = await register('edge-next');
    await agent.heartbeat();
    expect(await metricValue(hub.metrics, 'hawser_hub_connected_agents')).toBe(2);
  });
});

describe('HubCore failed-authentication rate limit', () => {
  const wrongToken = 'zzzzzz.zzzzzzzzzzzzzzzz';

  async function attempt(spec: Parameters<typeof helloFrame>[0]) {
    const agent = FakeAgent.open(hub);
    await agent.send(helloFrame(spec));
    return agent;
  }

  it('refuses bootstrap tokens from a peer over its failure budget unchecked, but admits a valid credential', async () => {
    hub = await startTestHub({ authFailures: { capacity: 2, refillPerSecond: 0.1, maxPeers: 100 } });
    const { clusterId, credential, agent: first } = await register('edge-known');
    first.channel.close();

    await (await attempt({ clusterId: randomUUID(), token: wrongToken })).expectGoodbye(ErrorCode.BadBootstrapToken);
    const second = await (await attempt({ clusterId: randomUUID(), token: wrongToken })).expectGoodbye(ErrorCode.BadBootstrapToken);
    expect(second.retryAfterMs).toBe(10_000);

    // Over budget: even the right token is not checked.
    const limited = await (await attempt({ clusterId: randomUUID(), token: hub.token, name: 'edge-new' })).expectGoodbye(ErrorCode.RateLimited);
    expect(limited.retryAfterMs).toBe(10_000);
    expect(await hub.store.get('ManagedCluster', 'edge-new')).toBeUndefined();
    expect(await rejectedCount(hub.metrics, ErrorCode.RateLimited)).toBe(1);

    // A valid credential from the same address is verified and admitted.
    const known = await attempt({ clusterId, credential });
    expect((await known.expectFrame('welcome')).clusterName).toBe('edge-known');
    // A wrong one is refused with its own code, and told to wait.
    const wrong = await (await attempt({ clusterId, credential: 'hwc_wrong' })).expectGoodbye(ErrorCode.BadCredential);
    expect(wrong.retryAfterMs).toBeGreaterThan(0);

    hub.clock.advance(20_000);
    const later = await attempt({ clusterId: randomUUID(), token: hub.token, name: 'edge-new' });
    expect((await later.expectFrame('welcome')).clusterName).toBe('edge-new');
  });

  it('does not spend the budget on refusals that are not authentication failures', async () => {
    hub = await startTestHub({ authFailures: { capacity: 1, refillPerSecond: 0.1, maxPeers: 100 } });
    for (let i = 0; i < 3; i++) {
      await (await attempt({ clusterId: randomUUID(), token: hub.token, name: 'Bad_Name' })).expectGoodbye(ErrorCode.InvalidRegistration);
    }
    const ok = await attempt({ clusterId: randomUUID(), token: hub.token, name: 'edge-ok' });
    expect((await ok.expectFrame('welcome')).clusterName).toBe('edge-ok');
    await waitFor('no rate limiting', async () => (await rejectedCount(hub.metrics, ErrorCode.RateLimited)) === 0);
  });
});

/** The store, with every read and write held while `closed` (writes then go on in order). */
function gatedStore() {
  let open!: () => void;
  let gate: Promise<void> | undefined;
  const held = new Set(['get', 'read', 'list', 'put', 'delete', 'batch']);
  return {
    close: () => (gate = new Promise<void>((resolve) => (open = resolve))),
    open: () => {
      gate = undefined;
      open();
    },
    wrap: (store: HubStore): HubStore =>
      new Proxy(store, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof prop !== 'string' || !held.has(prop) || typeof value !== 'function') return value;
          return async (...args: unknown[]) => {
            while (gate) await gate;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      }),
  };
}

describe('HubCore handshake admission', () => {
  it('past the limit queues hellos while a slot is due soon, refuses the rest with a retry-after from the queue, admits them when they come back, and never sheds heartbeats', async () => {
    const gate = gatedStore();
    const limit = 3;
    const queued = 2;
    const extra = 2;
    hub = await startTestHub(
      {
        handshakes: {
          ...defaultHandshakeAdmission,
          limit: { ...defaultHandshakeAdmission.limit, min: limit, max: limit, initial: limit },
          // The live agent's registration is the one completion measured, in 100 ms: 3 slots at
          // 100 ms finish 30/s. So a queue of 2 is 67 ms of waiting, within the bound.
          maxQueueWaitMs: 70,
          retryAfterMinMs: 10,
        },
      },
      { wrapStore: gate.wrap, random: () => 0.5 },
    );
    gate.close();
    const registered = register('edge-live');
    await waitFor('the live agent in progress', async () => hub.core.handshakesInProgress === 1);
    hub.clock.advance(100);
    gate.open();
    const { agent: live } = await registered;
    await live.heartbeat();
    expect(hub.core.handshakeAdmission.completionRatePerSec).toBe(30);

    // The store stalls: registrations stay in progress.
    gate.close();
    const hellos = Array.from({ length: limit + queued + extra }, (_, i) => ({ clusterId: randomUUID(), token: hub.token, name: `edge-herd-${i}` }));
    const herd = hellos.map(() => FakeAgent.open(hub));
    // One at a time, so the order of arrival (and of the queue) is known.
    for (const [i, agent] of herd.entries()) {
      await agent.send(helloFrame(hellos[i]!));
      await waitFor(`hello ${i} placed`, async () =>
        hub.core.handshakesInProgress + hub.core.handshakeAdmission.queued + (await rejectedCount(hub.metrics, ErrorCode.HubBusy)) === i + 1,
      );
    }
    expect(hub.core.handshakesInProgress).toBe(limit);
    expect(hub.core.handshakeAdmission.queued).toBe(queued);
    expect(await metricValue(hub.metrics, 'hawser_hub_handshakes_queued')).toBe(queued);
    expect(await metricValue(hub.metrics, 'hawser_hub_handshake_limit')).toBe(limit);
    const refused = herd.slice(limit + queued);
    const waits = [];
    for (const agent of refused) {
      const goodbye = await agent.expectGoodbye(ErrorCode.HubBusy);
      waits.push(goodbye.retryAfterMs);
    }
    // At 30/s the queue of 2 and one more take 100 ms; half the bound (35 ms) before that is 65 ms;
    // the next refused hello is booked one completion (33 ms) later.
    expect(waits).toEqual([65, 98]);
    expect(herd.slice(0, limit + queued).every((agent) => !agent.isClosed)).toBe(true);

    // Meanwhile the connected agent's heartbeats are all acked (the acks do not wait for the store).
    for (let sequence = 100; sequence < 110; sequence++) {
      await live.send({ frame: { $case: 'heartbeat', value: { sequence, sentAtUnixMs: 0, lastRttMs: 0, statusUnchanged: true } } });
      expect((await live.expectFrame('heartbeatAck')).sequence).toBe(sequence);
    }

    gate.open();
    // The admitted and the queued are welcomed on the streams they opened: no second TLS handshake.
    for (const agent of herd.slice(0, limit + queued)) await agent.expectFrame('welcome');
    // The refused come back after their retry-after and are admitted.
    for (const [k, agent] of refused.entries()) {
      hub.clock.advance(waits[k]!);
      const i = herd.indexOf(agent);
      const again = FakeAgent.open(hub);
      await again.send(helloFrame(hellos[i]!));
      expect((await again.expectFrame('welcome')).clusterName).toBe(`edge-herd-${i}`);
    }
    expect(hub.core.handshakesInProgress).toBe(0);
    expect(hub.core.handshakeAdmission.queued).toBe(0);
    expect(await metricValue(hub.metrics, 'hawser_hub_handshakes_queued')).toBe(0);
    expect(await metricValue(hub.metrics, 'hawser_hub_connected_agents')).toBe(1 + limit + queued + extra);
    expect(await rejectedCount(hub.metrics, ErrorCode.HubBusy)).toBe(extra);
  });

  it('a hello whose stream closes while it waits for a slot leaves the queue and is not counted as refused', async () => {
    const gate = gatedStore();
    hub = await startTestHub(
      { handshakes: { ...defaultHandshakeAdmission, limit: { ...defaultHandshakeAdmission.limit, min: 1, max: 1, initial: 1 } } },
      { wrapStore: gate.wrap, random: () => 0.5 },
    );
    gate.close();
    const first = FakeAgent.open(hub);
    await first.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-first' }));
    await waitFor('in progress', async () => hub.core.handshakesInProgress === 1);
    const leaving = FakeAgent.open(hub);
    await leaving.send(helloFrame({ clusterId: randomUUID(), token: hub.token, name: 'edge-leaving' }));
    await waitFor('queued', async () => hub.core.handshakeAdmission.queued === 1);
    leaving.channel.close();
    await waitFor('left the queue', async () => hub.core.handshakeAdmission.queued === 0);
    gate.open();
    expect((await first.expectFrame('welcome')).clusterName).toBe('edge-first');
    expect(await rejectedCount(hub.metrics, ErrorCode.HubBusy)).toBe(0);
    expect(await hub.store.get('ManagedCluster', 'edge-leaving')).toBeUndefined();
  });
});
