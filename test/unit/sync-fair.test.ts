import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { KubeObject } from '../../src/hub/store.js';
import { type SyncOptions, SyncStats, syncHandlerFactory } from '../../src/hub/sync/index.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { agentFramePriority, hubFramePriority, PrioritySender, type SendPriority } from '../../src/tunnel/queue.js';
import { clusterNamespace, clusterStatus, edgeAgentOptions, settle, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from './support.js';

// The link shared fairly (issue 7 §3): the send queue's priorities, the
// bound on sync bytes in flight, and a subscription changed again
// mid-transfer sending the newer rendering. A real hub and agent over the
// in-memory transport, on a ManualClock; an agent that withholds its acks
// (its cache's writes held at a gate) stands in for a slow link.

const chunkBytes = 16 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('priority send queue', () => {
  /** A transport whose sends stay pending until released, in order. */
  function heldTransport() {
    const taken: string[] = [];
    const pending: Array<{ frame: string; release: () => void; fail: (e: unknown) => void }> = [];
    const transmit = (frame: string) =>
      new Promise<void>((resolve, reject) => {
        taken.push(frame);
        pending.push({ frame, release: resolve, fail: reject });
      });
    return { taken, pending, transmit };
  }
  const byName = (frame: string): SendPriority => (frame.startsWith('u') ? 'urgent' : frame.startsWith('n') ? 'normal' : 'bulk');

  it('an urgent frame goes at once past queued bulk; control goes before bulk; each priority keeps its order', async () => {
    const t = heldTransport();
    const sender = new PrioritySender(t.transmit, byName);
    const sent = ['b1', 'b2', 'b3', 'n1', 'n2'].map((f) => sender.send(f));
    // One frame at a time reaches the transport; the rest wait here.
    expect(t.taken).toEqual(['b1']);
    expect(sender.queued).toBe(4);
    void sender.send('u1');
    expect(t.taken).toEqual(['b1', 'u1']);
    t.pending.splice(1, 1)[0]!.release();
    // Each release lets the next queued frame through.
    for (let i = 0; i < 5; i++) {
      expect(t.pending).toHaveLength(1);
      t.pending.shift()!.release();
      await settle();
    }
    expect(t.taken).toEqual(['b1', 'u1', 'n1', 'n2', 'b2', 'b3']);
    await Promise.all(sent);
  });

  it("a transport's refusal rejects that frame only; the queue goes on", async () => {
    const t = heldTransport();
    const sender = new PrioritySender(t.transmit, byName);
    const first = sender.send('b1');
    const second = sender.send('b2');
    t.pending.shift()!.fail(new HawserError(ErrorCode.Unavailable, 'gone'));
    await expect(first).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await settle();
    expect(t.taken).toEqual(['b1', 'b2']);
    t.pending.shift()!.release();
    await second;
  });

  it('a large bulk frame holds the next until an urgent frame sent after it is acked; a newer report replaces a queued one', async () => {
    const t = heldTransport();
    let out = 0;
    const sizes: Record<string, number> = { b1: 20_000, b2: 20_000, b3: 100, u0: 10, u1: 10 };
    const sender = new PrioritySender(
      (f: string) => {
        out += sizes[f] ?? 0;
        return t.transmit(f);
      },
      byName,
      { pacing: { paceBytes: 16_000, bytesOut: () => out }, supersedes: (older, newer) => older.startsWith('b') && newer.startsWith('b') },
    );
    void sender.send('u0');
    void sender.send('b1');
    t.pending.splice(0, 2).forEach((p) => p.release());
    await settle();
    // b1 was large: b2 waits; b3 replaces it in the queue (its send resolves at once).
    const b2 = sender.send('b2');
    const b3 = sender.send('b3');
    await b2;
    expect(t.taken).toEqual(['u0', 'b1']);
    // The ack of a heartbeat sent before b1 went out does not release it.
    sender.urgentAcked();
    await settle();
    expect(t.taken).toEqual(['u0', 'b1']);
    void sender.send('u1');
    sender.urgentAcked();
    await settle();
    expect(t.taken).toEqual(['u0', 'b1', 'u1', 'b3']);
    t.pending.splice(1, 1)[0]!.release();
    await b3;
    sender.close(new HawserError(ErrorCode.Unavailable, 'ended'));
    await expect(sender.send('n1')).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });

  it('a large bulk frame waits for a pause of quietMs in the frames that mark a transfer (on the clock); a small one does not', async () => {
    const t = heldTransport();
    const clock = new ManualClock(0);
    const sender = new PrioritySender(t.transmit, byName, {
      quiet: { busy: (f) => f.startsWith('n'), holds: (f) => f.startsWith('bL'), quietMs: 1_000, clock },
    });
    void sender.send('n1');
    t.pending.shift()!.release();
    await settle();
    void sender.send('bSmall');
    await settle();
    expect(t.taken).toEqual(['n1', 'bSmall']);
    t.pending.shift()!.release();
    void sender.send('bLarge');
    await settle();
    expect(t.taken).toEqual(['n1', 'bSmall']);
    clock.advance(999);
    await settle();
    expect(t.taken).toEqual(['n1', 'bSmall']);
    clock.advance(1);
    await settle();
    expect(t.taken).toEqual(['n1', 'bSmall', 'bLarge']);
  });

  it('heartbeats and their acks are urgent, sync data and apply reports bulk, sync acks control', () => {
    expect(hubFramePriority({ frame: { $case: 'heartbeatAck' } })).toBe('urgent');
    for (const kind of ['syncBegin', 'syncObject', 'syncEnd', 'syncCompressed', 'confirmPrune']) expect(hubFramePriority({ frame: { $case: kind } })).toBe('bulk');
    expect(hubFramePriority({ frame: { $case: 'openStream' } })).toBe('normal');
    expect(agentFramePriority({ frame: { $case: 'heartbeat' } })).toBe('urgent');
    expect(agentFramePriority({ frame: { $case: 'applyReport' } })).toBe('bulk');
    expect(agentFramePriority({ frame: { $case: 'syncAck' } })).toBe('normal');
    expect(agentFramePriority({ frame: { $case: 'syncChunkAck' } })).toBe('normal');
  });
});

interface Hub extends TestHub {
  stats: SyncStats;
}

async function hub(options: Partial<SyncOptions>, features: string[] = [Feature.Sync, Feature.Chunks]): Promise<Hub> {
  const h = await startTestHub({ features: features as Feature[] });
  const stats = new SyncStats();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats, metrics: h.metrics, options: { chunkBytes, ...options } }));
  cleanups.push(() => h.close());
  return Object.assign(h, { stats });
}

/**
 * An agent whose cache writes (so its acks) wait at a gate while it is shut.
 * `again`: the identity of an earlier agent (the same cluster) with a new,
 * empty cache, its gate shut from the start.
 */
async function gatedAgent(h: TestHub, features: string[], again?: { home: string; cache: string }) {
  const dir = again ? { path: again.home } : await tempDir('fair-agent');
  if (!again) cleanups.push(() => (dir as Awaited<ReturnType<typeof tempDir>>).remove());
  const cache = await OfflineCache.open({ dir: join(dir.path, again?.cache ?? 'db') });
  const receiver = new SyncReceiver(cache, silentLogger, () => h.clock.now(), {});
  let open: (() => void) | undefined;
  let gate: Promise<void> | undefined = again ? new Promise<void>((r) => (open = r)) : undefined;
  const realBatch = cache.batch.bind(cache);
  cache.batch = async (ops, options) => {
    if (gate) await gate;
    return realBatch(ops, options);
  };
  const core = new AgentCore(edgeAgentOptions(h.token, { backoff: { baseMs: 1, capMs: 5, stableAfterMs: 60_000 }, features: features as Feature[] }), {
    transport: h.transport.client(),
    reader: new StaticClusterReader(clusterStatus('ok')),
    cache,
    identityStore: new IdentityStore(dir.path),
    logger: silentLogger,
    clock: h.clock,
    random: () => 0,
    syncResume: async () => ({ ...(await readSyncState(cache, silentLogger)), ...(await receiver.helloFields()) }),
  });
  core.registerHandler(receiver.handlerFactory());
  void core.start();
  cleanups.push(async () => {
    open?.();
    await core.stop();
    await cache.close();
  });
  return {
    home: dir.path,
    core,
    cache,
    receiver,
    shut: () => void (gate ??= new Promise<void>((r) => (open = r))),
    open: () => {
      gate = undefined;
      open?.();
    },
    acked: async () => (await readSyncState(cache, silentLogger)).lastAckedRevision,
    held: async (name: string) => (await receiver.desired()).objects.find((o) => o.object.metadata.name === name)?.object,
  };
}

function manifest(ns: string, name: string, data: Record<string, string>): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name }, data },
  };
}

/** `bytes` of incompressible data. */
const noise = (bytes: number) => randomBytes(Math.ceil(bytes / 2)).toString('hex').slice(0, bytes);

/** Lets the hub send all it will while the agent's acks are held. */
async function stalled(h: Hub): Promise<number> {
  let last = -1;
  for (;;) {
    await settle(200);
    const now = h.stats.of('edge').bytes;
    if (now === last) return now;
    last = now;
  }
}

describe('sync bytes in flight are bounded by acks', () => {
  for (const compressed of [false, true]) {
    it(`${compressed ? 'compressed' : 'bare'}: with acks withheld the hub stops at inFlightBytes on the wire; heartbeats are acked meanwhile; it resumes on acks`, async () => {
      const features = compressed ? [Feature.Sync, Feature.Chunks, Feature.CompressionDeflate] : [Feature.Sync, Feature.Chunks];
      const inFlightBytes = 24 * 1024;
      const h = await hub({ inFlightBytes, chunkWindowBytes: 1024 * 1024 }, features);
      const a = await gatedAgent(h, features);
      const ns = await clusterNamespace(h);
      await waitFor('the first snapshot acked', async () => (await a.acked()) > 0);
      a.shut();
      let rv = 0;
      // 40 objects of 4 KB (160 KB), and one large one of 6 chunks: far more than the bound.
      for (let i = 0; i < 40; i++) rv = Number(await h.store.put('Manifest', { namespace: ns, name: `o${i}` }, manifest(ns, `o${i}`, { blob: noise(4000) })));
      rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, manifest(ns, 'big', { blob: noise(6 * chunkBytes - 500) })));
      const before = h.stats.of('edge').bytes;
      await stalled(h);
      const stats = h.stats.of('edge');
      // One frame (a run or an object, at most a group's half of the bound) may pass the bound.
      expect(stats.peakInFlightBytes).toBeLessThanOrEqual(inFlightBytes + inFlightBytes / 2 + 1024);
      expect(stats.bytes - before).toBeLessThan(2 * inFlightBytes);
      let rtts = 0;
      a.core.on('rtt', () => rtts++);
      await waitFor('a heartbeat acked while sync is stalled', () => {
        h.clock.advance(1_000);
        return rtts > 0;
      });
      a.open();
      await waitFor('all acked once the agent acks again', async () => (await a.acked()) >= rv);
      expect(h.stats.of('edge').peakInFlightBytes).toBeLessThanOrEqual(inFlightBytes + inFlightBytes / 2 + 1024);
      expect((await a.receiver.desired()).objects).toHaveLength(41);
    });
  }
});

describe('a subscription changed again mid-transfer sends the newer rendering', () => {
  it('a large object: the stale transfer stops at the window (counted abandoned), the newer one arrives whole', async () => {
    const h = await hub({ chunkWindowBytes: 2 * chunkBytes + 1024 });
    const a = await gatedAgent(h, [Feature.Sync, Feature.Chunks]);
    const ns = await clusterNamespace(h);
    await waitFor('the first snapshot acked', async () => (await a.acked()) > 0);
    a.shut();
    await h.store.put('Manifest', { namespace: ns, name: 'big' }, manifest(ns, 'big', { v: 'old', blob: noise(20 * chunkBytes) }));
    await waitFor('the window full of stale chunks', () => h.stats.of('edge').chunkFrames === 2);
    await stalled(h);
    const newer = manifest(ns, 'big', { v: 'new', blob: noise(5 * chunkBytes) });
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, newer));
    a.open();
    await waitFor('the newer rendering acked', async () => (await a.acked()) >= rv);
    expect(await a.held('big')).toEqual(newer['template']);
    const stats = h.stats.of('edge');
    expect(stats.abandoned).toBe(1);
    // 2 stale chunks (the window), then the 6 of the newer one: not the other 19 stale ones.
    expect(stats.chunkFrames).toBe(2 + Math.ceil(JSON.stringify(newer['template']).length / chunkBytes));
    expect((await a.receiver.helloFields()).partialObject).toBeUndefined();
  });

  it('a large object with only its last chunk left is finished first: that costs less than dropping it', async () => {
    const h = await hub({ chunkWindowBytes: 2 * chunkBytes + 1024 });
    const a = await gatedAgent(h, [Feature.Sync, Feature.Chunks]);
    const ns = await clusterNamespace(h);
    await waitFor('the first snapshot acked', async () => (await a.acked()) > 0);
    a.shut();
    const stale = manifest(ns, 'big', { v: 'old', blob: noise(3 * chunkBytes - 500) });
    await h.store.put('Manifest', { namespace: ns, name: 'big' }, stale);
    await waitFor('two of three chunks out', () => h.stats.of('edge').chunkFrames === 2);
    await stalled(h);
    const newer = manifest(ns, 'big', { v: 'new', blob: noise(2 * chunkBytes + 100) });
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, newer));
    a.open();
    await waitFor('the newer rendering acked', async () => (await a.acked()) >= rv);
    expect(await a.held('big')).toEqual(newer['template']);
    expect(h.stats.of('edge').abandoned).toBe(0);
    expect(h.stats.of('edge').chunkFrames).toBe(3 + 3);
  });

  it('whole objects: stale renderings waiting behind the window are not sent; each object arrives at its newest', async () => {
    const h = await hub({ inFlightBytes: 16 * 1024 }, [Feature.Sync, Feature.Chunks]);
    const a = await gatedAgent(h, [Feature.Sync, Feature.Chunks]);
    const ns = await clusterNamespace(h);
    await waitFor('the first snapshot acked', async () => (await a.acked()) > 0);
    a.shut();
    const count = 30;
    for (let i = 0; i < count; i++) await h.store.put('Manifest', { namespace: ns, name: `o${i}` }, manifest(ns, `o${i}`, { v: 'old', blob: noise(2000) }));
    await stalled(h);
    const sentStale = h.stats.of('edge').objectFrames;
    expect(sentStale).toBeLessThan(count);
    let rv = 0;
    for (let i = 0; i < count; i++) rv = Number(await h.store.put('Manifest', { namespace: ns, name: `o${i}` }, manifest(ns, `o${i}`, { v: 'new', blob: noise(2000) })));
    a.open();
    await waitFor('the newer renderings acked', async () => (await a.acked()) >= rv);
    const held = (await a.receiver.desired()).objects.map((o) => (o.object as unknown as { data: { v: string } }).data.v);
    expect(held).toEqual(Array.from({ length: count }, () => 'new'));
    const stats = h.stats.of('edge');
    expect(stats.coalesced).toBe(count - sentStale);
    expect(stats.objectFrames).toBe(sentStale + count);
  });

  it('a snapshot: an object changed while the snapshot goes out is sent at its newest, once; the deltas after skip what it sent ahead', async () => {
    const features = [Feature.Sync, Feature.Chunks];
    const h = await hub({ inFlightBytes: 16 * 1024 }, features);
    const first = await gatedAgent(h, features);
    const ns = await clusterNamespace(h);
    await waitFor('the first snapshot acked', async () => (await first.acked()) > 0);
    await first.core.stop();
    const count = 30;
    for (let i = 0; i < count; i++) await h.store.put('Manifest', { namespace: ns, name: `o${i}` }, manifest(ns, `o${i}`, { v: 'old', blob: noise(2000) }));
    await h.store.put('Manifest', { namespace: ns, name: 'zz-gone' }, manifest(ns, 'zz-gone', { v: 'old', blob: noise(2000) }));
    const before = h.stats.of('edge');
    const [framesBefore, coalescedBefore, snapshotsBefore] = [before.objectFrames, before.coalesced, before.snapshots];
    // The same cluster with an empty cache: a snapshot of 31 objects (zz-gone listed last), stalled at the in-flight bound.
    const a = await gatedAgent(h, features, { home: first.home, cache: 'db-2' });
    await waitFor('the snapshot begun', () => h.stats.of('edge').snapshots > snapshotsBefore);
    await stalled(h);
    const sentStale = h.stats.of('edge').objectFrames - framesBefore;
    expect(sentStale).toBeLessThan(count);
    let rv = 0;
    for (let i = 0; i < count; i++) rv = Number(await h.store.put('Manifest', { namespace: ns, name: `o${i}` }, manifest(ns, `o${i}`, { v: 'new', blob: noise(2000) })));
    rv = Math.max(rv, Number(await h.store.delete('Manifest', { namespace: ns, name: 'zz-gone' })));
    // The hub's feed has the changes before the snapshot goes on.
    await settle(200);
    a.open();
    await waitFor('the newer renderings acked', async () => (await a.acked()) >= rv);
    const held = (await a.receiver.desired()).objects.map((o) => [o.object.metadata.name, (o.object as unknown as { data: { v: string } }).data.v] as const);
    expect(new Map(held)).toEqual(new Map(Array.from({ length: count }, (_, i) => [`o${i}`, 'new'])));
    const stats = h.stats.of('edge');
    // Each object not yet sent goes once, at its newest (not old in the snapshot, then new in a delta); those sent stale get
    // their delta. The one deleted (listed last) is left out of the snapshot; its delete follows.
    expect(stats.objectFrames - framesBefore).toBe(count + sentStale + 1);
    expect(stats.coalesced - coalescedBefore).toBe(count - sentStale + 1);
  });
});
