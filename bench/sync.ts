import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { AgentCore } from '../src/agent/agent.js';
import { IdentityStore } from '../src/agent/identity.js';
import { StaticClusterReader } from '../src/agent/kube.js';
import { SyncReceiver } from '../src/agent/sync-receiver.js';
import { readSyncState } from '../src/agent/sync-state.js';
import { OfflineCache } from '../src/cache/index.js';
import type { KubeObject } from '../src/hub/store.js';
import { SyncStats, syncHandlerFactory } from '../src/hub/sync/index.js';
import { Feature } from '../src/tunnel/index.js';
import { clusterStatus, seeded, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from '../test/unit/support.js';
import { findRepoRoot } from './common.js';
import { generateCorpus, type Manifest } from './corpus.js';

// bench/sync: the bytes sync puts on the wire for an initial sync of N typical
// manifests (bench/corpus.ts, seed 1), against the same manifests as raw JSON
// and as one gzip of the whole batch (all three measured in this run), and
// the bytes of resyncs after changes: on the live session, and after a
// reconnect. A real hub (HubCore, EmbeddedStore) and a real agent (AgentCore,
// OfflineCache) in this process over the in-memory transport; bytes are the
// protobuf bytes of every sync frame the hub sent (SyncStats), which is what
// gRPC carries (gRPC, HTTP/2 and TLS add about 40 B per message on top).
//
//   npm run bench:sync                 # 1,000 manifests
//   npm run bench:sync -- --objects 5000

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const objects = arg('objects', 1000);
const corpus = generateCorpus(seeded(1), objects);
const labels = { 'apps.clusternet.io/subs.name': 'edge-apps', 'apps.clusternet.io/subs.namespace': 'default' };

function manifest(ns: string, i: number, template: Manifest): KubeObject {
  return { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Manifest', metadata: { namespace: ns, name: `m-${String(i).padStart(5, '0')}`, labels }, template };
}

/** A change an operator makes: a new image tag, replicas, or a config value. */
function changed(m: Manifest, round: number): Manifest {
  const copy = structuredClone(m) as Manifest & { spec?: { replicas?: number }; data?: Record<string, string> };
  if (copy.kind === 'Deployment' || copy.kind === 'StatefulSet') copy.spec!.replicas = 10 + round;
  else if (copy.data) copy.data[`changed-${round}`] = `value-${round}`;
  else copy.metadata.labels = { ...copy.metadata.labels, 'example.com/round': String(round) };
  return copy;
}

interface Run {
  mode: string;
  initialBytes: number;
  initialRawBytes: number;
  live1: number;
  live10: number;
  reconnect1: number;
  changedJsonBytes: number;
  changed10JsonBytes: number;
  reconnectJsonBytes: number;
}

async function startAgent(h: TestHub, home: string, features: string[]) {
  const cache = await OfflineCache.open({ dir: join(home, 'db') });
  const receiver = new SyncReceiver(cache, silentLogger, () => h.clock.now());
  const core = new AgentCore(
    {
      clusterRegName: 'edge',
      clusterType: 'EdgeCluster',
      clusterLabels: {},
      clusterSyncMode: 'Pull',
      clusterStatusUpdateFrequencyMs: 10_000,
      clusterLeaseDurationMs: 30_000,
      backoff: { baseMs: 1_000, capMs: 5_000, stableAfterMs: 60_000 },
      bootstrapToken: h.token,
      registerTimeoutMs: 10_000,
      missedHeartbeatLimit: 3,
      agentVersion: 'bench',
      features,
    },
    { transport: h.transport.client(), reader: new StaticClusterReader(clusterStatus('ok')), cache, identityStore: new IdentityStore(home), logger: silentLogger, clock: h.clock, random: () => 0.5 },
  );
  core.registerHandler(receiver.handlerFactory());
  void core.start();
  return {
    acked: async () => (await readSyncState(cache, silentLogger)).lastAckedRevision,
    stop: async () => {
      await core.stop();
      await cache.close();
    },
  };
}

async function run(mode: string, agentFeatures: string[]): Promise<Run> {
  const h = await startTestHub({ features: [Feature.Sync, Feature.CompressionDeflate, Feature.LocalDigest] });
  const stats = new SyncStats();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats }));
  const home = await tempDir('bench-sync');
  try {
    let agent = await startAgent(h, home.path, agentFeatures);
    const ns = await waitFor('registered', async () => (await h.store.list('ManagedCluster')).items[0]?.object.metadata.namespace, 30_000);
    let last = 0;
    for (let i = 0; i < corpus.length; i += 200) {
      const ops = corpus.slice(i, i + 200).map((m, j) => ({ op: 'put' as const, kind: 'Manifest' as const, key: { namespace: ns, name: manifest(ns, i + j, m).metadata.name }, value: manifest(ns, i + j, m) }));
      last = Number((await h.store.batch(ops)).at(-1));
    }
    await waitFor('initial sync acked', async () => (await agent.acked()) >= last, 120_000);
    const c = stats.of('edge');
    const initialBytes = c.bytes;
    const initialRawBytes = c.rawBytes;
    const put = async (i: number, round: number) => {
      const m = changed(corpus[i]!, round);
      return { revision: Number(await h.store.put('Manifest', { namespace: ns, name: manifest(ns, i, m).metadata.name }, manifest(ns, i, m))), json: JSON.stringify(m).length };
    };
    // One change on the live session.
    let before = c.bytes;
    const one = await put(0, 1);
    await waitFor('one change acked', async () => (await agent.acked()) >= one.revision);
    const live1 = c.bytes - before;
    // Ten changes on the live session, one batch.
    before = c.bytes;
    let changed10JsonBytes = 0;
    let rev = 0;
    for (let k = 0; k < 10; k++) {
      const r = await put(1 + k * Math.floor(corpus.length / 10), 2);
      changed10JsonBytes += r.json;
      rev = r.revision;
    }
    await waitFor('ten changes acked', async () => (await agent.acked()) >= rev);
    const live10 = c.bytes - before;
    // One change while the agent is away: reconnect, deltas.
    await agent.stop();
    const away = await put(5, 3);
    before = c.bytes;
    agent = await startAgent(h, home.path, agentFeatures);
    await waitFor('change after reconnect acked', async () => (await agent.acked()) >= away.revision, 30_000);
    const reconnect1 = c.bytes - before;
    await agent.stop();
    return { mode, initialBytes, initialRawBytes, live1, live10, reconnect1, changedJsonBytes: one.json, changed10JsonBytes, reconnectJsonBytes: away.json };
  } finally {
    await h.close();
    await home.remove();
  }
}

const jsons = corpus.map((m) => JSON.stringify(m));
const rawJson = jsons.reduce((a, s) => a + Buffer.byteLength(s), 0);
const gzipBatch = gzipSync(Buffer.from(`[${jsons.join(',')}]`)).length;
const bare = await run('hawser, no compression (agent --enable-compression=false), sync.local-digest', [Feature.Sync, Feature.LocalDigest]);
const withDigest = await run('hawser, compression.deflate.k8s1, content_sha256 on the wire (an agent without sync.local-digest)', [Feature.Sync, Feature.CompressionDeflate]);
const compressed = await run('hawser, compression.deflate.k8s1 + sync.local-digest', [Feature.Sync, Feature.CompressionDeflate, Feature.LocalDigest]);

const x = (n: number) => `${(rawJson / n).toFixed(1)}×`;
console.log(`initial sync of ${objects} manifests (bench/corpus.ts seed 1), ${rawJson} B of JSON`);
console.log('| encoding | initial sync bytes | vs raw JSON | 1 change, live | 10 changes, live | 1 change, after reconnect |');
console.log('|---|---|---|---|---|---|');
console.log(`| raw JSON | ${rawJson} | 1.0× | ${compressed.changedJsonBytes} | ${compressed.changed10JsonBytes} | ${compressed.reconnectJsonBytes} |`);
console.log(`| gzip of the batch | ${gzipBatch} | ${x(gzipBatch)} | | | |`);
for (const r of [bare, withDigest, compressed]) console.log(`| ${r.mode} | ${r.initialBytes} | ${x(r.initialBytes)} | ${r.live1} | ${r.live10} | ${r.reconnect1} |`);
console.log(`compressed frames carried ${compressed.initialRawBytes} B of sync frames in ${compressed.initialBytes} B: ${(compressed.initialRawBytes / compressed.initialBytes).toFixed(1)}×`);

const root = findRepoRoot(fileURLToPath(import.meta.url));
mkdirSync(join(root, 'bench/results'), { recursive: true });
const file = join(root, 'bench/results', `sync-${new Date().toISOString().replace(/:/g, '-').slice(0, 19)}.json`);
writeFileSync(file, `${JSON.stringify({ objects, rawJson, gzipBatch, runs: [bare, withDigest, compressed] }, null, 2)}\n`);
console.log(`results: ${file}`);
