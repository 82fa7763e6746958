import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import { defaultHubCoreOptions, HubCore } from '../../src/hub/hub.js';
import { HubMetrics } from '../../src/hub/metrics.js';
import { EmbeddedStore, type KubeObject } from '../../src/hub/store.js';
import { SyncStats, syncHandlerFactory } from '../../src/hub/sync/index.js';
import { generateBootstrapToken } from '../../src/hub/tokens.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { GrpcClientTransport, GrpcServerTransport } from '../../src/tunnel/grpc.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { type CertificateAuthority, createCertificateAuthority, createServingCertificate, type ServingCertificate } from '../../src/tunnel/tls.js';
import { clusterStatus, edgeAgentOptions, silentLogger, tempDir, waitFor } from './support.js';

// Compression negotiation over real gRPC (TLS on loopback): one hub that
// offers compression, an agent that offers it and one that does not (as an
// agent from before it, or one run with --enable-compression=false). Both
// converge; only the first gets compressed frames.

let ca: CertificateAuthority;
let serving: ServingCertificate;
beforeAll(async () => {
  ca = await createCertificateAuthority('sync-grpc-test-ca');
  serving = await createServingCertificate(ca, ['localhost', '127.0.0.1']);
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function manifest(ns: string, i: number): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name: `cm-${i}`, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: `cm-${i}` }, data: { value: `v${i}`, pad: 'x'.repeat(300) } },
  };
}

describe('sync compression over real gRPC', () => {
  it('an agent that offers compression gets compressed frames; one that offers none still syncs, bare', async () => {
    const clock = new ManualClock(Date.now());
    const dir = await tempDir('sync-grpc-hub');
    cleanups.push(() => dir.remove());
    const store = await EmbeddedStore.open(dir.path);
    cleanups.push(() => store.close());
    const token = generateBootstrapToken();
    const core = new HubCore(
      { ...defaultHubCoreOptions, bootstrapTokens: [token], autoApprove: true, features: [Feature.Sync, Feature.CompressionDeflate] },
      store,
      new HubMetrics({ processMetrics: false }),
      silentLogger,
      clock,
    );
    const stats = new SyncStats();
    core.registerHandler(syncHandlerFactory({ store, logger: silentLogger, stats }));
    const address = await core.start(new GrpcServerTransport({ address: '127.0.0.1:0', tls: { certPem: serving.certPem, keyPem: serving.keyPem } }));
    cleanups.push(() => core.stop());

    const agent = async (name: string, features: string[]) => {
      const home = await tempDir(`sync-grpc-${name}`);
      cleanups.push(() => home.remove());
      const cache = await OfflineCache.open({ dir: join(home.path, 'db') });
      const receiver = new SyncReceiver(cache, silentLogger, () => clock.now());
      const transport = new GrpcClientTransport({ target: address, tls: { caPem: ca.certPem, serverNameOverride: 'localhost' } });
      const a = new AgentCore(
        edgeAgentOptions(token, { clusterRegName: name, features }),
        { transport, reader: new StaticClusterReader(clusterStatus('ok')), cache, identityStore: new IdentityStore(home.path), logger: silentLogger, clock, random: () => 0.5 },
      );
      a.registerHandler(receiver.handlerFactory());
      void a.start();
      cleanups.push(async () => {
        await a.stop();
        transport.close();
        await cache.close();
      });
      const ns = await waitFor(`${name} registered`, async () => (await store.get('ManagedCluster', name))?.metadata.namespace);
      return { ns, receiver, acked: async () => (await readSyncState(cache, silentLogger)).lastAckedRevision };
    };

    const compressed = await agent('edge-z', [Feature.Sync, Feature.CompressionDeflate]);
    const plain = await agent('edge-plain', [Feature.Sync]);
    for (const a of [compressed, plain]) {
      const ops = Array.from({ length: 150 }, (_, i) => ({ op: 'put' as const, kind: 'Manifest' as const, key: { namespace: a.ns, name: `cm-${i}` }, value: manifest(a.ns, i) }));
      const last = Number((await store.batch(ops)).at(-1));
      await waitFor('acked', async () => (await a.acked()) >= last);
      const names = (await a.receiver.desired()).objects.map((o) => o.object.metadata.name);
      expect(names.sort()).toEqual(Array.from({ length: 150 }, (_, i) => `cm-${i}`).sort());
    }
    expect(stats.of('edge-z').compressedFrames).toBeGreaterThan(0);
    expect(stats.of('edge-z').bytes * 4).toBeLessThan(stats.of('edge-z').rawBytes);
    expect(stats.of('edge-plain').compressedFrames).toBe(0);
    expect(stats.of('edge-plain').bytes).toBe(stats.of('edge-plain').rawBytes);
  });
});
