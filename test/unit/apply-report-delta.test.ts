import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { ApplyReportSender, maxReportPartBytes, reportParts } from '../../src/agent/apply-report-delta.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import { SyncApplyLoop } from '../../src/agent/sync-apply.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { KubeObject } from '../../src/hub/store.js';
import { readSyncStatus, syncHandlerFactory, writeApplyReport } from '../../src/hub/sync/index.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { wire } from '../../src/tunnel/index.js';
import { clusterStatus, edgeAgentOptions, RecordingApplier, FakeAgent, helloFrame, metricValue, seeded, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from './support.js';

// Feature "apply-report.delta": after the first report of a session, an
// agent's report carries only the rows that changed since the report the hub
// acknowledged, in parts of bounded size. The hub ends with exactly the
// status the whole report gives; when it lacks the base (another session, a
// lost part) it asks for the report whole.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function hub(features: string[]): Promise<TestHub> {
  const h = await startTestHub({ features });
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, metrics: h.metrics }));
  cleanups.push(() => h.close());
  return h;
}

/** A hand-driven agent session that offered `features`; its cluster's namespace and name. */
async function session(h: TestHub, features: string[]) {
  const fake = FakeAgent.open(h);
  cleanups.push(async () => fake.channel.close());
  await fake.send(helloFrame({ clusterId: randomUUID(), token: h.token, protocolVersion: 1, features }));
  const welcome = await fake.expectFrame('welcome');
  const cluster = await waitFor('the cluster', async () => (await h.store.get('ManagedCluster', welcome.clusterName)) ?? undefined);
  let cursor = 0;
  /** The next ApplyReportAck the hub sent (sync frames in between are skipped). */
  const nextAck = () =>
    waitFor('an apply report ack', () => {
      while (cursor < fake.received.length) {
        const f = fake.received[cursor++]!.frame;
        if (f?.$case === 'applyReportAck') return f.value;
      }
      return undefined;
    });
  const send = (report: wire.ApplyReport) => fake.send({ frame: { $case: 'applyReport', value: report } });
  return { fake, namespace: cluster.metadata.namespace!, name: welcome.clusterName, nextAck, send };
}

/** Sends `report` through `sender` and answers it with the hub's acks until nothing is in flight. */
async function deliver(sender: ApplyReportSender, s: Awaited<ReturnType<typeof session>>, report: wire.ApplyReport): Promise<void> {
  sender.submit(report);
  while (!sender.idle) sender.acked(await s.nextAck());
}

function row(name: string, action: string, status: unknown, error = ''): wire.ObjectApplyStatus {
  return {
    key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name },
    subscriptions: ['default/app'],
    action,
    exists: action !== 'deleted',
    errorCode: error,
    errorMessage: error ? `${name} failed` : '',
    observedStatusJson: status === undefined ? '' : JSON.stringify(status),
  };
}

function report(revision: number, at: number, rows: wire.ObjectApplyStatus[], omitted = 0): wire.ApplyReport {
  return { revision, objects: rows, pruneHeldReason: '', pruneHeldIncarnation: '', pruneHeldRevision: 0, pruneRan: revision % 2 === 0, appliedAtUnixMs: at, objectsOmitted: omitted };
}

/** A sequence of reports that change rows, add and remove them, repeat a key and change nothing at all. */
function reports(): wire.ApplyReport[] {
  const random = seeded(11);
  const t0 = Date.UTC(2026, 10, 23, 8, 0, 0);
  let rows = Array.from({ length: 150 }, (_, i) => row(`cm-${i}`, 'applied', { replicas: 1, readyReplicas: i % 2 }));
  const out = [report(1, t0, rows)];
  // Some observed statuses change.
  rows = rows.map((r, i) => (i % 30 === 7 ? row(r.key!.name, 'applied', { replicas: 2, readyReplicas: Math.floor(random() * 3) }) : r));
  out.push(report(2, t0 + 30_000, rows));
  // Ten go, three come, one fails (errors first, as the agent orders them).
  rows = [row('cm-3', 'error', undefined, 'HAWSER_APPLY_FAILED'), ...rows.filter((r) => !/^cm-(1\d|3)$/.test(r.key!.name)), row('new-a', 'applied', {}), row('new-b', 'unchanged', undefined), row('new-c', 'deleted', undefined)];
  out.push(report(3, t0 + 60_000, rows, 2));
  // A key twice: the last one counts, on both paths.
  out.push(report(4, t0 + 90_000, [...rows, row('cm-40', 'released', undefined)]));
  // Nothing changes but the time.
  out.push(report(4, t0 + 120_000, [...rows, row('cm-40', 'released', undefined)]));
  // Everything goes.
  out.push(report(5, t0 + 150_000, []));
  out.push(report(6, t0 + 180_000, rows));
  return out;
}

describe('apply report deltas', () => {
  it('a sequence of deltas in bounded parts ends in exactly the status each full report gives', async () => {
    const h = await hub([Feature.Sync, Feature.ReportDelta]);
    const s = await session(h, [Feature.Sync, Feature.ReportDelta]);
    const frames: wire.ApplyReport[] = [];
    const partBytes = 2048;
    const sender = new ApplyReportSender((part) => {
      frames.push(part);
      void s.send(part);
    }, partBytes);
    for (const [i, r] of reports().entries()) {
      const before = frames.length;
      await deliver(sender, s, r);
      // The same report whole, as an agent without the feature sends it, to a status of its own.
      await writeApplyReport(h.store, s.namespace, 'reference', r);
      const got = await readSyncStatus(h.store, s.namespace, s.name);
      expect(got, `report ${i}`).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));
      for (const f of frames.slice(before)) expect(wire.ApplyReport.encode(f).finish().length).toBeLessThanOrEqual(partBytes);
    }
    // Only the first went whole (in parts); each later one is a delta against the one before.
    expect(sender.counters).toMatchObject({ reports: 7, fullReports: 1, fullNeeded: 0 });
    expect(frames.filter((f) => f.part!.baseId === 0).every((f) => f.part!.id === 1)).toBe(true);
    const first = frames.filter((f) => f.part!.id === 1);
    expect(first.length).toBeGreaterThan(3);
    // The unchanged pass (report 5) is one frame of no rows.
    expect(frames.filter((f) => f.part!.id === 5).map((f) => f.objects.length)).toEqual([0]);
    expect(await metricValue(h.metrics, 'hawser_hub_apply_report_frames_total', { cluster: s.name })).toBe(frames.length);
  });

  it('a delta against a base the hub does not hold is answered full_needed; the report then goes whole and the status is right', async () => {
    const h = await hub([Feature.Sync, Feature.ReportDelta]);
    const s = await session(h, [Feature.Sync, Feature.ReportDelta]);
    const [r1, r2, r3] = reports();
    const frames: wire.ApplyReport[] = [];
    const sender = new ApplyReportSender((part) => {
      frames.push(part);
      void s.send(part);
    });
    await deliver(sender, s, r1!);
    const written = await readSyncStatus(h.store, s.namespace, s.name);

    // A delta whose base this session never wrote (a lost report, another session's base): nothing is written.
    await s.send({ ...r2!, objects: [row('cm-0', 'error', undefined, 'HAWSER_X')], part: { id: 40, baseId: 39, index: 0, count: 1, sender: sender.sender } });
    expect(await s.nextAck()).toEqual({ id: 40, index: 0, fullNeeded: true });
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(written);

    // The hub no longer trusts its base either: the agent's next delta is refused, and the report follows whole.
    await deliver(sender, s, r2!);
    expect(sender.counters).toMatchObject({ reports: 3, fullReports: 2, fullNeeded: 1 });
    expect(frames.at(-1)!.part).toMatchObject({ baseId: 0 });
    await writeApplyReport(h.store, s.namespace, 'reference', r2!);
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));

    // A part whose first part never came (lost): full_needed, nothing written.
    await s.send({ ...r3!, objects: [], part: { id: 50, baseId: frames.at(-1)!.part!.id, index: 1, count: 2, sender: sender.sender } });
    expect(await s.nextAck()).toEqual({ id: 50, index: 1, fullNeeded: true });
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));
    expect(await metricValue(h.metrics, 'hawser_hub_apply_report_full_needed_total', { cluster: s.name })).toBe(3);

    // And then deltas work again from the next full report.
    await deliver(sender, s, r3!);
    await writeApplyReport(h.store, s.namespace, 'reference', r3!);
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));
    expect(sender.counters).toMatchObject({ fullReports: 3, fullNeeded: 2 });

    // The status record gone from the store (the base's rows with it): the delta is refused, the report goes whole.
    await h.store.delete('ClusterSyncStatus', { namespace: s.namespace, name: s.name });
    const [, , , r4] = reports();
    await deliver(sender, s, r4!);
    await writeApplyReport(h.store, s.namespace, 'reference', r4!);
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));
    expect(sender.counters).toMatchObject({ fullReports: 4, fullNeeded: 3 });
  });

  it('an ack for a part not in flight is HAWSER_SYNC_PROTOCOL at the agent', () => {
    const sender = new ApplyReportSender(() => undefined);
    expect(() => sender.acked({ id: 1, index: 0, fullNeeded: false })).toThrow(expect.objectContaining({ code: 'HAWSER_SYNC_PROTOCOL' }));
    sender.submit(reports()[0]!);
    expect(() => sender.acked({ id: 1, index: 3, fullNeeded: false })).toThrow(expect.objectContaining({ code: 'HAWSER_SYNC_PROTOCOL' }));
  });

  it('on a session without the feature a report is whole, whatever it carries, and gets no ack', async () => {
    const h = await hub([Feature.Sync, Feature.ReportDelta]);
    const s = await session(h, [Feature.Sync]);
    const r = reports()[2]!;
    // With the feature this would be a first part against a base never written (refused); here it is a whole report.
    await s.send({ ...r, part: { id: 7, baseId: 3, index: 0, count: 2, sender: 'x' } });
    await writeApplyReport(h.store, s.namespace, 'reference', r);
    await waitFor('the report written', async () => (await readSyncStatus(h.store, s.namespace, s.name))?.revision === r.revision);
    expect(await readSyncStatus(h.store, s.namespace, s.name)).toEqual(await readSyncStatus(h.store, s.namespace, 'reference'));
    expect(s.fake.received.filter((f) => f.frame?.$case === 'applyReportAck')).toEqual([]);
  });

  it('splits rows into frames of at most the part size; a row larger than a part goes alone', () => {
    const rows = Array.from({ length: 400 }, (_, i) => row(`cm-${i}`, 'applied', { replicas: i }));
    const big = row('big', 'error', undefined, 'HAWSER_X');
    big.errorMessage = 'e'.repeat(20_000);
    const parts = reportParts(report(1, 0, []), [...rows.slice(0, 200), big, ...rows.slice(200)], 1, 0);
    expect(parts.map((p) => p.part!.index)).toEqual(parts.map((_, i) => i));
    expect(parts.every((p) => p.part!.count === parts.length)).toBe(true);
    expect(parts.flatMap((p) => p.objects)).toHaveLength(401);
    const sizes = parts.map((p) => wire.ApplyReport.encode(p).finish().length);
    const alone = parts.findIndex((p) => p.objects.includes(big));
    expect(parts[alone]!.objects).toEqual([big]);
    expect(sizes.filter((_, i) => i !== alone).every((n) => n <= maxReportPartBytes)).toBe(true);
  });
});

function manifest(ns: string, i: number): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name: `cm-${i}`, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: `cm-${i}` }, data: { value: 'v', pad: 'x'.repeat(100) } },
  };
}

describe('apply reports between a real agent and hub', () => {
  async function run(hubFeatures: string[]) {
    const h = await hub(hubFeatures);
    const dir = await tempDir('report-delta');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    const receiver = new SyncReceiver(cache, silentLogger, () => h.clock.now(), {});
    // cm-0's observed readiness is what `ready` says now.
    const observed = { ready: 1 };
    const cluster = new RecordingApplier((name) => ({ replicas: 1, readyReplicas: name === 'cm-0' ? observed.ready : 1 }));
    const loop = new SyncApplyLoop({ receiver, applier: cluster, logger: silentLogger, clock: h.clock, intervalMs: 60_000 });
    const core = new AgentCore(edgeAgentOptions(h.token, { features: [Feature.Sync, Feature.ReportDelta] }), {
      transport: h.transport.client(),
      reader: new StaticClusterReader(clusterStatus('ok')),
      cache,
      identityStore: new IdentityStore(dir.path),
      logger: silentLogger,
      clock: h.clock,
      random: () => 0.5,
    });
    core.registerHandler(receiver.handlerFactory());
    core.registerHandler(loop.handlerFactory());
    loop.start();
    void core.start();
    cleanups.push(async () => {
      await loop.stop();
      await core.stop();
      await cache.close();
    });
    const managed = await waitFor('registered', async () => (await h.store.list('ManagedCluster')).items[0]?.object);
    const ns = managed.metadata.namespace!;
    await h.store.batch(Array.from({ length: 300 }, (_, i) => ({ op: 'put' as const, kind: 'Manifest' as const, key: { namespace: ns, name: `cm-${i}` }, value: manifest(ns, i) })));
    // Reports wait for a pause of a second in a transfer (src/agent/session.ts), on the agent's clock.
    const status = async () => {
      h.clock.advance(1_000);
      return readSyncStatus(h.store, ns, managed.metadata.name);
    };
    await waitFor('every object reported', async () => ((await status())?.objects?.length === 300 ? true : undefined));
    // One object's observed status changes: the next pass reports it.
    observed.ready = 0;
    loop.trigger();
    await waitFor('the change reported', async () => ((await status())?.objects?.find((o) => o.name === 'cm-0')?.status as { readyReplicas?: number } | undefined)?.readyReplicas === 0 || undefined);
    return { h, loop, core, status, observed, cluster: managed.metadata.name };
  }

  it('both with the feature: the first report goes whole in parts, the next as a delta of one row', async () => {
    const { h, loop, core, status, observed, cluster } = await run([Feature.Sync, Feature.ReportDelta]);
    await waitFor('the delta acknowledged', () => (loop.reportCounters?.reports ?? 0) >= 2 && loop.reportCounters?.fullNeeded === 0 || undefined);
    expect(loop.reportCounters!.fullReports).toBe(1);
    expect(loop.reportCounters!.largestFrameBytes).toBeLessThanOrEqual(maxReportPartBytes);
    expect(await metricValue(h.metrics, 'hawser_hub_apply_report_largest_frame_bytes', { cluster })).toBeLessThanOrEqual(maxReportPartBytes);

    // A reconnect to the same hub keeps the base: the next report is a delta again, not 300 rows.
    const sessions = await metricValue(h.metrics, 'hawser_hub_sessions_total');
    core.cacheQuarantined(0);
    await waitFor('a new session', async () => {
      h.clock.advance(1_000);
      return (await metricValue(h.metrics, 'hawser_hub_sessions_total')) > sessions || undefined;
    });
    observed.ready = 2;
    loop.trigger();
    await waitFor('the change after the reconnect reported', async () => ((await status())?.objects?.find((o) => o.name === 'cm-0')?.status as { readyReplicas?: number } | undefined)?.readyReplicas === 2 || undefined);
    expect(loop.reportCounters).toMatchObject({ fullReports: 1, fullNeeded: 0 });
  });

  it('a hub without the feature (an older hub) gets whole reports, one frame each', async () => {
    const { h, loop, cluster } = await run([Feature.Sync]);
    expect(loop.reportCounters).toBeUndefined();
    expect(await metricValue(h.metrics, 'hawser_hub_apply_report_largest_frame_bytes', { cluster })).toBeGreaterThan(maxReportPartBytes);
  });
});
