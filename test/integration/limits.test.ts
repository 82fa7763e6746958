import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountSmallDisk, type SmallDisk } from '../../src/testkit/index.js';
import { ErrorCode, GrpcClientTransport, type HawserError, wire } from '../../src/tunnel/index.js';
import { bootstrapToken, type HubProcess, jsonLines, signedHello, startAgentProcess, startHubProcess, TestBed, until } from './harness.js';

// Limits and operator mistakes against real hub and agent processes: a wrong
// CA, a full disk, and a peer guessing secrets. No kube cluster is needed: the
// agents here are given a kubeconfig whose API server does not answer, which
// costs them only their status (reported as failing), not their connection.

describe('limits and operator mistakes, with real processes', () => {
  let bed: TestBed;
  let kubeconfig: string;

  beforeAll(async () => {
    bed = await TestBed.create('limits');
    kubeconfig = join(bed.dir, 'nowhere.kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]',
        'users: [{name: nobody, user: {token: none}}]',
        'contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]',
        'current-context: nowhere',
        '',
      ].join('\n'),
    );
  });

  afterAll(() => bed?.close());

  function hubAt(name: string, args: string[] = []): Promise<HubProcess> {
    return startHubProcess({ dataDir: join(bed.dir, name), logDir: bed.logDir, tracker: bed.tracker, args: ['--auto-approve', ...args] });
  }

  /** One hello on a fresh stream; returns the Goodbye or Welcome and how the stream ended. */
  async function hello(hub: HubProcess, auth: wire.Hello['auth'], name: string, clusterId = randomUUID()) {
    const transport = new GrpcClientTransport({ target: hub.tunnel, tls: { caPem: await readFile(hub.caFile, 'utf8') } });
    try {
      const channel = transport.open();
      await channel.send(
        signedHello({
          clusterId,
          auth,
          registration: { name, namespace: '', clusterType: 'EdgeCluster', labels: {}, syncMode: wire.SyncMode.SYNC_MODE_DUAL },
          lastAckedRevision: 0,
          leaseDurationMs: 0,
          agentVersion: 'test',
          protocolVersion: 0,
          minProtocolVersion: 0,
          features: [],
          hubIncarnation: '',
          syncModeInEffect: wire.SyncMode.SYNC_MODE_UNSPECIFIED,
          desiredDigest: '',
        }),
      );
      let goodbye: wire.Goodbye | undefined;
      let welcome: wire.Welcome | undefined;
      for await (const inbound of channel.frames()) {
        if (inbound.ok && inbound.frame.frame?.$case === 'goodbye') goodbye = inbound.frame.frame.value;
        if (inbound.ok && inbound.frame.frame?.$case === 'welcome') {
          welcome = inbound.frame.frame.value;
          break;
        }
      }
      channel.close();
      const closed: HawserError | undefined = await channel.closed;
      return { goodbye, welcome, closed };
    } finally {
      transport.close();
    }
  }

  it('an agent given another hub\'s CA is told the hub is untrusted, and retries only at the backoff cap', { timeout: 120_000 }, async () => {
    const hub = await hubAt('hub-a');
    const other = await hubAt('hub-b');
    const agent = await startAgentProcess({
      name: 'edge-wrong-ca',
      parentUrl: hub.tunnel,
      caFile: other.caFile,
      cacheDir: join(bed.dir, 'agents', 'edge-wrong-ca'),
      kubeconfig,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: ['--reconnect-period=1s', '--max-reconnect-period=2s'],
    });
    const backingOff = () => jsonLines(agent).filter((l) => l.to === 'backing-off');
    await until('two refused dials', async () => backingOff().length >= 2);
    for (const line of backingOff()) {
      expect((line.reason as { code: string }).code).toBe(ErrorCode.UntrustedHub);
      expect((line.reason as { message: string }).message).toMatch(/not trusted by --parent-ca-file/);
      expect(line.delayMs).toBe(2_000);
    }
    expect(await hub.clusters()).toEqual([]);
    await agent.stop();
    await other.proc.stop();
    await hub.proc.stop();
  });

  it('a registration that fails on a full disk gets a Goodbye with a code and is counted', { timeout: 120_000 }, async () => {
    let disk: SmallDisk | undefined;
    try {
      disk = await mountSmallDisk(8 * 1024 * 1024);
      const hub = await startHubProcess({ dataDir: join(disk.path, 'hub'), logDir: bed.logDir, tracker: bed.tracker, args: ['--auto-approve'] });
      await disk.fill();
      const { goodbye, closed, welcome } = await hello(hub, { $case: 'bootstrapToken', value: bootstrapToken }, 'edge-full');
      expect(welcome).toBeUndefined();
      expect(goodbye?.code).toBe(ErrorCode.StorageFull);
      expect(goodbye?.retryAfterMs).toBeGreaterThan(0);
      expect(closed?.code).toBe(ErrorCode.StorageFull);
      expect(await hub.metric('hawser_hub_rejected_total', { code: ErrorCode.StorageFull })).toBe(1);
      expect(hub.proc.running).toBe(true);
      await hub.proc.stop();
    } finally {
      await disk?.close();
    }
  });

  it('failed attempts from one address are rate-limited; a valid credential from it is still admitted', { timeout: 120_000 }, async () => {
    const hub = await hubAt('hub-rate');
    // A real agent registers first and holds its credential.
    const agent = await startAgentProcess({
      name: 'edge-nat',
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: join(bed.dir, 'agents', 'edge-nat'),
      kubeconfig,
      logDir: bed.logDir,
      tracker: bed.tracker,
    });
    await until('edge-nat registered', async () => (await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-nat' })) === 1);

    // A neighbour behind the same address guesses tokens until the hub stops checking them.
    let limited: wire.Goodbye | undefined;
    for (let i = 0; i < 20 && !limited; i++) {
      const r = await hello(hub, { $case: 'bootstrapToken', value: 'zzzzzz.zzzzzzzzzzzzzzzz' }, 'edge-guess');
      if (r.goodbye?.code === ErrorCode.RateLimited) limited = r.goodbye;
      else expect(r.goodbye?.code).toBe(ErrorCode.BadBootstrapToken);
    }
    expect(limited?.retryAfterMs).toBeGreaterThan(0);
    expect(await hub.metric('hawser_hub_rejected_total', { code: ErrorCode.RateLimited })).toBeGreaterThanOrEqual(1);
    // Now even the right token from that address waits ...
    const right = await hello(hub, { $case: 'bootstrapToken', value: bootstrapToken }, 'edge-late');
    expect(right.goodbye?.code).toBe(ErrorCode.RateLimited);
    expect(await hub.clusters().then((cs) => cs.map((c) => c.metadata.name))).toEqual(['edge-nat']);

    // ... but the real agent, reconnecting from the same address with its credential, is admitted.
    await agent.restart();
    await until('edge-nat reconnected', async () => (await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-nat' })) === 2);
    await agent.stop();
    await hub.proc.stop();
  });

  it('streams that have not said hello are capped per hub; one more is told to come back later', { timeout: 120_000 }, async () => {
    const hub = await hubAt('hub-busy', ['--max-unwelcomed-streams=2']);
    const caPem = await readFile(hub.caFile, 'utf8');
    const transports = [0, 1, 2].map(() => new GrpcClientTransport({ target: hub.tunnel, tls: { caPem } }));
    try {
      const silent = transports.slice(0, 2).map((t) => t.open());
      await until('two silent streams open on the hub', async () => (await hub.metric('hawser_hub_open_streams')) === 2);
      const third = transports[2]!.open();
      let goodbye: wire.Goodbye | undefined;
      for await (const inbound of third.frames()) {
        if (inbound.ok && inbound.frame.frame?.$case === 'goodbye') goodbye = inbound.frame.frame.value;
      }
      expect(goodbye?.code).toBe(ErrorCode.HubBusy);
      expect(goodbye?.retryAfterMs).toBeGreaterThan(0);
      expect((await third.closed)?.code).toBe(ErrorCode.HubBusy);
      expect(await hub.metric('hawser_hub_rejected_total', { code: ErrorCode.HubBusy })).toBe(1);
      for (const s of silent) s.close();
    } finally {
      for (const t of transports) t.close();
    }
    await hub.proc.stop();
  });
});
