import { randomUUID } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OfflineCache } from '../../src/cache/index.js';
import { type KubeCluster, type ManagedProcess, mountSmallDisk, type SmallDisk } from '../../src/testkit/index.js';
import { ErrorCode, GrpcClientTransport, generateAgentKeyPair, signProof, wire } from '../../src/tunnel/index.js';
import {
  bootstrapToken,
  hawser,
  type HubProcess,
  readyStatus,
  startAgentProcess,
  startHubProcess,
  TestBed,
  until,
} from './harness.js';

// The agent's identity against real hub and agent processes: a takeover with
// the shared bootstrap token, a full disk while storing the credential, a
// damaged LevelDB, a hub that lost its data, and an operator deleting a cluster.

const fastReconnect = ['--reconnect-period=500ms', '--max-reconnect-period=1s', '--cluster-status-update-frequency=1s'];

interface StoredIdentity {
  clusterId: string;
  credential?: string;
}

async function storedIdentity(cacheDir: string): Promise<StoredIdentity | undefined> {
  const text = await readFile(join(cacheDir, 'identity.json'), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as { identity: StoredIdentity }).identity;
}

/** Lines of the process's whole log file (all runs) that match. */
async function logCount(proc: ManagedProcess, pattern: RegExp): Promise<number> {
  const text = await readFile(proc.logPath, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => pattern.test(l)).length;
}

const readyLine = /"to":"ready"/;

describe('agent identity against real processes', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hubs = 0;

  beforeAll(async () => {
    bed = await TestBed.create('identity');
    kube = await bed.kube('edge-identity');
  });

  afterAll(() => bed?.close());

  function hub(args: string[] = []): Promise<HubProcess> {
    return startHubProcess({ dataDir: join(bed.dir, `hub-${++hubs}`), logDir: bed.logDir, tracker: bed.tracker, args });
  }

  function agent(name: string, h: HubProcess, cacheDir = join(bed.dir, 'agents', name), args: string[] = []): Promise<ManagedProcess> {
    return startAgentProcess({
      name,
      parentUrl: h.tunnel,
      caFile: h.caFile,
      cacheDir,
      kubeconfig: kube.kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: [...fastReconnect, ...args],
    });
  }

  /** A signed hello as an attacker builds it: the shared bootstrap token, a public cluster id, its own key. */
  function signedHello(clusterId: string, name: string): wire.ConnectRequest {
    const key = generateAgentKeyPair();
    const proof = signProof(
      { purpose: 'register', clusterId, clusterName: name, publicKeyDer: key.publicKeyDer, secret: bootstrapToken },
      key.privateKeyDer,
      Date.now(),
    );
    return {
      frame: {
        $case: 'hello',
        value: {
          clusterId,
          auth: { $case: 'bootstrapToken', value: bootstrapToken },
          registration: { name, namespace: '', clusterType: 'EdgeCluster', labels: {}, syncMode: wire.SyncMode.SYNC_MODE_DUAL },
          lastAckedRevision: 0,
          leaseDurationMs: 0,
          agentVersion: 'attacker',
          publicKey: Buffer.from(key.publicKeyDer),
          proof,
          cacheQuarantines: 0,
          protocolVersion: 0,
          minProtocolVersion: 0,
          features: [],
          hubIncarnation: '',
          syncModeInEffect: wire.SyncMode.SYNC_MODE_UNSPECIFIED,
          desiredDigest: '',
        },
      },
    };
  }

  /** Sends one hello over the real gRPC tunnel; returns the frames up to the welcome or goodbye. */
  async function exchange(h: HubProcess, hello: wire.ConnectRequest): Promise<wire.ConnectResponse[]> {
    const transport = new GrpcClientTransport({ target: h.tunnel, tls: { caPem: await readFile(h.caFile, 'utf8') } });
    const channel = transport.open();
    const received: wire.ConnectResponse[] = [];
    try {
      await channel.send(hello);
      for await (const inbound of channel.frames()) {
        if (!inbound.ok) break;
        received.push(inbound.frame);
        const kind = inbound.frame.frame?.$case;
        if (kind === 'goodbye' || kind === 'welcome') break;
      }
    } finally {
      channel.close();
      transport.close();
    }
    return received;
  }

  const attackerHello = (h: HubProcess, clusterId: string, name: string) => exchange(h, signedHello(clusterId, name));

  function goodbyeCode(frames: wire.ConnectResponse[]): string | undefined {
    const f = frames.find((x) => x.frame?.$case === 'goodbye')?.frame;
    return f?.$case === 'goodbye' ? f.value.code : undefined;
  }

  it('refuses a takeover with the bootstrap token and a public cluster id; the real agent stays Ready with its credential', async () => {
    const h = await hub(['--auto-approve']);
    const cacheDir = join(bed.dir, 'agents', 'edge-victim');
    const victim = await agent('edge-victim', h, cacheDir);
    await until('victim Ready', async () => readyStatus(await h.cluster('edge-victim')) === 'True');
    const clusterId = (await h.cluster('edge-victim'))!.spec.clusterId;
    const before = await storedIdentity(cacheDir);
    expect(before?.credential).toMatch(/^hwc_/);

    const answer = await attackerHello(h, clusterId, 'edge-victim');
    expect(answer.some((f) => f.frame?.$case === 'welcome')).toBe(false);
    expect(goodbyeCode(answer)).toBe(ErrorCode.KeyMismatch);
    expect(await h.metric('hawser_hub_rejected_total', { code: ErrorCode.KeyMismatch })).toBe(1);

    // The real agent reconnects with its own credential, unchanged.
    await victim.restart();
    await victim.waitFor(readyLine, { timeoutMs: 30_000, what: 'victim ready again' });
    expect(await logCount(victim, /HAWSER_BAD_CREDENTIAL|HAWSER_ALREADY_REGISTERED/)).toBe(0);
    expect((await storedIdentity(cacheDir))?.credential).toBe(before?.credential);
    await until('victim Ready after restart', async () => readyStatus(await h.cluster('edge-victim')) === 'True');
    expect((await h.clusters()).map((c) => c.spec.clusterId)).toEqual([clusterId]);

    // A hello recorded off the wire and replayed is refused, though its signature is valid.
    const recorded = signedHello(randomUUID(), 'edge-recorded');
    expect((await exchange(h, recorded)).some((f) => f.frame?.$case === 'welcome')).toBe(true);
    expect(goodbyeCode(await exchange(h, recorded))).toBe(ErrorCode.SignatureReplayed);
    await victim.stop();
    await h.proc.stop();
  });

  it('a full disk while storing the credential is a clear error and a retry, never a lockout', async () => {
    const disk: SmallDisk = await mountSmallDisk();
    try {
      const h = await hub();
      const cacheDir = join(disk.path, 'agent');
      const edge = await agent('edge-fulldisk', h, cacheDir);
      await edge.waitFor(/hawser approve edge-fulldisk/, { timeoutMs: 30_000, what: 'pending' });
      await disk.fill(0);

      const approved = await hawser(['approve', 'edge-fulldisk', `--hub=${h.apiUrl}`]);
      expect(approved.code).toBe(0);
      await edge.waitFor(/HAWSER_CACHE_WRITE_FAILED/, { timeoutMs: 30_000, what: 'the failed write reported' });
      // Retried, and never used while not durable: no Ready with a credential only memory holds.
      await until('a retry', async () => (await logCount(edge, /HAWSER_CACHE_WRITE_FAILED.*backing-off|"to":"backing-off".*HAWSER_CACHE_WRITE_FAILED/)) >= 2);
      expect(await logCount(edge, readyLine)).toBe(0);
      expect((await storedIdentity(cacheDir))?.credential).toBeUndefined();

      await disk.unfill();
      await edge.waitFor(readyLine, { timeoutMs: 30_000, what: 'ready once the disk has room' });
      const stored = await storedIdentity(cacheDir);
      expect(stored?.credential).toMatch(/^hwc_/);

      // After a restart it rejoins with the stored credential: no lockout.
      await edge.restart();
      await until('ready after restart', async () => (await logCount(edge, readyLine)) >= 2);
      expect(await logCount(edge, /HAWSER_ALREADY_REGISTERED|HAWSER_BAD_CREDENTIAL/)).toBe(0);
      expect((await storedIdentity(cacheDir))?.credential).toBe(stored?.credential);
      await edge.stop();
      await h.proc.stop();
    } finally {
      await disk.close();
    }
  });

  it('quarantines a LevelDB with a flipped byte in its log, or without CURRENT and MANIFEST, and rejoins as the same cluster', async () => {
    const h = await hub(['--auto-approve']);
    const cacheDir = join(bed.dir, 'agents', 'edge-corrupt');
    const edge = await agent('edge-corrupt', h, cacheDir);
    await until('Ready', async () => readyStatus(await h.cluster('edge-corrupt')) === 'True');
    const clusterId = (await h.cluster('edge-corrupt'))!.spec.clusterId;
    const dbDir = join(cacheDir, 'db');

    /** Stops the agent and leaves records in its cache, as cached manifests will be. */
    async function stopWithRecords(): Promise<void> {
      await edge.stop();
      const cache = await OfflineCache.open({ dir: dbDir });
      for (let i = 0; i < 5; i++) await cache.put(`manifest/${i}`, { data: 'x'.repeat(200) });
      await cache.close();
    }

    await stopWithRecords();
    const log = (await readdir(dbDir)).find((f) => f.endsWith('.log'))!;
    const bytes = await readFile(join(dbDir, log));
    bytes[bytes.indexOf('manifest/2') + 30]! ^= 0xff;
    await writeFile(join(dbDir, log), bytes);
    await edge.restart();
    await edge.waitFor(/HAWSER_CACHE_CORRUPT/, { timeoutMs: 30_000, what: 'corruption reported' });
    await until('ready after quarantine', async () => (await logCount(edge, readyLine)) >= 2);
    await until('the hub counted it', async () => (await h.metric('hawser_agent_cache_quarantines_total', { cluster: 'edge-corrupt' })) === 1);
    const quarantined = (await readdir(cacheDir)).filter((f) => f.startsWith('db.quarantine-'));
    expect(quarantined).toHaveLength(1);
    expect(await readFile(join(cacheDir, quarantined[0]!, log))).toEqual(bytes);

    await stopWithRecords();
    for (const f of await readdir(dbDir)) if (f === 'CURRENT' || f.startsWith('MANIFEST')) await rm(join(dbDir, f));
    await edge.restart();
    await until('ready after the second quarantine', async () => (await logCount(edge, readyLine)) >= 3);
    await until('the hub counted both', async () => (await h.metric('hawser_agent_cache_quarantines_total', { cluster: 'edge-corrupt' })) === 2);
    expect((await readdir(cacheDir)).filter((f) => f.startsWith('db.quarantine-'))).toHaveLength(2);

    // The same cluster all along: one ManagedCluster, same id, never a new registration.
    expect((await h.clusters()).map((c) => c.spec.clusterId)).toEqual([clusterId]);
    expect((await storedIdentity(cacheDir))?.clusterId).toBe(clusterId);
    await until('Ready', async () => readyStatus(await h.cluster('edge-corrupt')) === 'True');
    await edge.stop();
    await h.proc.stop();
  });

  it('a hub that lost its data is not a takeover: the agent registers again with the same cluster id', async () => {
    const h = await hub(['--auto-approve']);
    const cacheDir = join(bed.dir, 'agents', 'edge-reset');
    const edge = await agent('edge-reset', h, cacheDir);
    await until('Ready', async () => readyStatus(await h.cluster('edge-reset')) === 'True');
    const clusterId = (await h.cluster('edge-reset'))!.spec.clusterId;
    const oldCredential = (await storedIdentity(cacheDir))?.credential;

    await h.proc.stop();
    await rm(join(h.dataDir, 'store'), { recursive: true, force: true });
    await h.proc.restart();
    await h.proc.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready again' });

    await until('registered again', async () => (await h.cluster('edge-reset'))?.spec.clusterId === clusterId);
    await until('Ready', async () => readyStatus(await h.cluster('edge-reset')) === 'True');
    const now = await storedIdentity(cacheDir);
    expect(now?.clusterId).toBe(clusterId);
    expect(now?.credential).toMatch(/^hwc_/);
    expect(now?.credential).not.toBe(oldCredential);
    await edge.stop();
    await h.proc.stop();
  });

  it('`hawser deny` tells a waiting agent, and `hawser delete cluster` frees the name for a registration an operator approves', async () => {
    const h = await hub();
    const denied = await agent('edge-deny', h);
    await denied.waitFor(/hawser approve edge-deny/, { timeoutMs: 30_000, what: 'pending' });
    const deny = await hawser(['deny', 'edge-deny', `--hub=${h.apiUrl}`]);
    expect(deny.code).toBe(0);
    expect(deny.stdout).toMatch(/denied \(cluster edge-deny\)/);
    await denied.waitFor(/HAWSER_REGISTRATION_DENIED/, { timeoutMs: 30_000, what: 'denial' });
    // One audit line naming the operator who denied (the harness's admin token).
    expect(await logCount(h.proc, /^(?=.*"audit":true)(?=.*"action":"deny")(?=.*"user":"harness-admin")(?=.*"outcome":"ok")/)).toBe(1);
    await denied.stop();

    const cacheDir = join(bed.dir, 'agents', 'edge-del');
    const edge = await agent('edge-del', h, cacheDir);
    await edge.waitFor(/hawser approve edge-del/, { timeoutMs: 30_000, what: 'pending' });
    expect((await hawser(['approve', 'edge-del', `--hub=${h.apiUrl}`])).code).toBe(0);
    await until('Ready', async () => readyStatus(await h.cluster('edge-del')) === 'True');
    await edge.stop();

    // The agent's cache is gone (key and all): only an operator can let it back in.
    await rm(cacheDir, { recursive: true, force: true });
    const lost = await agent('edge-del', h, cacheDir);
    await lost.waitFor(/HAWSER_CLUSTER_NAME_TAKEN/, { timeoutMs: 30_000, what: 'name taken' });

    const del = await hawser(['delete', 'cluster', 'edge-del', `--hub=${h.apiUrl}`]);
    expect(del.code).toBe(0);
    expect(del.stdout).toMatch(/cluster\/edge-del deleted \(cluster id [0-9a-f-]{36}, 1 credential\(s\) revoked\)/);
    expect(await logCount(h.proc, /^(?=.*"audit":true)(?=.*"action":"delete-cluster")(?=.*"user":"harness-admin")(?=.*"outcome":"ok")/)).toBe(1);
    await lost.waitFor(/hawser approve edge-del/, { timeoutMs: 30_000, what: 'the fresh registration pending' });
    expect((await hawser(['approve', 'edge-del', `--hub=${h.apiUrl}`])).code).toBe(0);
    await until('Ready as the new cluster', async () => readyStatus(await h.cluster('edge-del')) === 'True');
    expect((await h.cluster('edge-del'))!.spec.clusterId).toBe((await storedIdentity(cacheDir))!.clusterId);

    const missing = await hawser(['delete', 'cluster', 'no-such', `--hub=${h.apiUrl}`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('HAWSER_NOT_FOUND');
    const usage = await hawser(['delete', 'clusters']);
    expect(usage.code).toBe(2);
    await lost.stop();
    await h.proc.stop();
  });
});
