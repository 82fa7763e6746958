import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import type { AgentState } from '../../src/agent/state.js';
import { TrustStore } from '../../src/agent/trust.js';
import { caOverlapMs, HubPki, PkiMaintainer, servingRenewAtMs } from '../../src/hub/pki.js';
import { startHub } from '../../src/hub/server.js';
import { mountSmallDisk } from '../../src/testkit/index.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { createCertificateAuthority, createServingCertificate } from '../../src/tunnel/tls.js';
import { defaultTrustBundleLimits, validateTrustBundle } from '../../src/tunnel/trust.js';
import { clusterStatus, settle, silentLogger, startTestHub, tempDir, waitFor } from './support.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function dir(prefix: string): Promise<string> {
  const d = await tempDir(prefix);
  cleanups.push(() => d.remove());
  return d.path;
}

const dayMs = 86_400_000;

describe('validateTrustBundle', () => {
  it('accepts a bounded list of PEM CA certificates and summarizes them', async () => {
    const a = await createCertificateAuthority('ca-a');
    const b = await createCertificateAuthority('ca-b');
    const summaries = validateTrustBundle([a.certPem, b.certPem]);
    expect(summaries.map((s) => s.subject)).toEqual(['CN=ca-a', 'CN=ca-b']);
    expect(summaries[0]!.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(summaries.every((s) => s.isCa)).toBe(true);
  });

  it('refuses an empty bundle, too many entries, oversized, garbage, a leaf certificate and two PEMs in one entry', async () => {
    const ca = await createCertificateAuthority('ca');
    const leaf = await createServingCertificate(ca, ['localhost']);
    const bad: string[][] = [
      [],
      Array<string>(defaultTrustBundleLimits.maxCertificates + 1).fill(ca.certPem),
      [ca.certPem + ' '.repeat(defaultTrustBundleLimits.maxPemBytes)],
      ['not a certificate'],
      ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
      [leaf.certPem],
      [ca.certPem + ca.certPem],
    ];
    for (const pems of bad) {
      expect(() => validateTrustBundle(pems), `${pems.length} entries`).toThrow(expect.objectContaining({ code: ErrorCode.InvalidTrustBundle }));
    }
  });
});

describe('HubPki', () => {
  it('rotates the CA with an overlap, and refuses to retire a CA that still signs the serving certificate', async () => {
    const clock = new ManualClock(Date.now());
    const pkiDir = await dir('pki');
    const pki = await HubPki.load(pkiDir, ['localhost'], clock);
    const first = pki.state();
    expect(first.cas).toHaveLength(1);
    const oldCa = first.cas[0]!.fingerprint;
    expect(first.servingCertificate.issuerFingerprint).toBe(oldCa);
    expect((await stat(join(pkiDir, 'ca-bundle.crt'))).mode & 0o777).toBe(0o644);

    const pushed: number[] = [];
    const served: string[] = [];
    pki.onChange({ bundleChanged: (b) => pushed.push(b.version), servingChanged: (s) => served.push(s.certPem) });
    const rotated = await pki.rotateCa();
    expect(rotated.cas.map((c) => c.current)).toEqual([true, false]);
    expect(rotated.servingCertificate.issuerFingerprint).toBe(oldCa); // still served: the overlap
    expect(pushed).toEqual([first.bundleVersion + 1]);
    expect(served).toEqual([]);
    await expect(pki.finishCaRotation()).rejects.toMatchObject({ code: ErrorCode.RotationIncomplete });

    const reissued = await pki.rotateServingCert();
    const newCa = reissued.cas.find((c) => c.current)!.fingerprint;
    expect(reissued.servingCertificate.issuerFingerprint).toBe(newCa);
    expect(served).toHaveLength(1);

    const finished = await pki.finishCaRotation();
    expect(finished.cas.map((c) => c.fingerprint)).toEqual([newCa]);
    expect(pushed).toEqual([first.bundleVersion + 1, first.bundleVersion + 2]);

    // A restart reads back the same state.
    const again = await HubPki.load(pkiDir, ['localhost'], clock);
    expect(again.state().cas.map((c) => c.fingerprint)).toEqual([newCa]);
    expect(again.state().servingCertificate.fingerprint).toBe(finished.servingCertificate.fingerprint);
  });

  it('rolls a CA change interrupted between its files forward on the next start', async () => {
    const clock = new ManualClock(Date.now());
    const pkiDir = await dir('pki');
    const first = (await HubPki.load(pkiDir, ['localhost'], clock)).state();
    // A crash inside the pair write: the new certificate waits in ca.crt.new, the new key is in place.
    const next = await createCertificateAuthority('hawser-hub-ca-next');
    await writeFile(join(pkiDir, 'ca.crt.new'), next.certPem);
    await writeFile(join(pkiDir, 'ca.key'), next.keyPem);
    const loaded = (await HubPki.load(pkiDir, ['localhost'], clock)).state();
    expect(await readFile(join(pkiDir, 'ca.crt'), 'utf8')).toBe(next.certPem);
    expect(loaded.cas.find((c) => c.current)!.subject).toBe('CN=hawser-hub-ca-next');
    // The old CA stays trusted (it signs the serving certificate) until the rotation is finished.
    expect(loaded.cas.map((c) => c.fingerprint)).toContain(first.cas[0]!.fingerprint);
    expect(loaded.servingCertificate.fingerprint).toBe(first.servingCertificate.fingerprint);
  });

  it('refuses a new CA while the bundle is full, so agents never get more than they accept', async () => {
    const pki = await HubPki.load(await dir('pki'), ['localhost'], new ManualClock(Date.now()));
    for (let i = 1; i < defaultTrustBundleLimits.maxCertificates; i++) await pki.rotateCa();
    expect(pki.state().cas).toHaveLength(defaultTrustBundleLimits.maxCertificates);
    await expect(pki.rotateCa()).rejects.toMatchObject({ code: ErrorCode.RotationIncomplete });
  });

  it('refuses rotation when the operator supplies the certificate', async () => {
    const ca = await createCertificateAuthority('own');
    const pki = HubPki.external(await createServingCertificate(ca, ['localhost']), new ManualClock(Date.now()));
    await expect(pki.rotateCa()).rejects.toMatchObject({ code: ErrorCode.PkiUnmanaged });
    expect(pki.trustBundle()).toBeUndefined();
  });
});

describe('PkiMaintainer', () => {
  it('rotates the serving certificate once it passes two thirds of its lifetime, not before', async () => {
    const clock = new ManualClock(Date.now());
    const pki = await HubPki.load(await dir('pki'), ['localhost'], clock);
    const first = pki.state().servingCertificate;
    const renewAt = servingRenewAtMs(first.notBeforeMs, first.notAfterMs);
    expect(renewAt - first.notBeforeMs).toBe(Math.floor(((first.notAfterMs - first.notBeforeMs) * 2) / 3));
    const rotations: string[] = [];
    const maintainer = new PkiMaintainer(pki, clock, (err) => { throw err; }, (what) => rotations.push(what));
    maintainer.start();
    cleanups.push(async () => maintainer.stop());

    clock.advance(renewAt - clock.now() - 1_000);
    await settle();
    expect(rotations).toEqual([]);
    expect(pki.state().servingCertificate.fingerprint).toBe(first.fingerprint);

    clock.advance(2_000);
    await waitFor('the automatic rotation', () => rotations.length > 0);
    const second = pki.state().servingCertificate;
    expect(rotations).toEqual(['serving-cert']);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    // The new certificate is dated by the injected clock, so the next rotation is two thirds of a lifetime away.
    expect(servingRenewAtMs(second.notBeforeMs, second.notAfterMs)).toBeGreaterThan(clock.now() + 500 * dayMs);
    await settle();
    expect(rotations).toEqual(['serving-cert']);
  });

  it('adds a new CA at two thirds of the current one, years before it expires, and moves the serving certificate only after the overlap', async () => {
    const clock = new ManualClock(Date.now());
    const pki = await HubPki.load(await dir('pki'), ['localhost'], clock);
    const firstCa = pki.state().cas[0]!;
    const caDueAt = servingRenewAtMs(firstCa.notBeforeMs, firstCa.notAfterMs);
    const s0 = pki.state().servingCertificate;
    const servingRenewSpan = servingRenewAtMs(s0.notBeforeMs, s0.notAfterMs) - s0.notBeforeMs;
    const bundles: number[] = [];
    pki.onChange({ bundleChanged: (b) => bundles.push(b.version), servingChanged: () => undefined });
    const rotations: string[] = [];
    const maintainer = new PkiMaintainer(pki, clock, (err) => { throw err; }, (what) => rotations.push(what));
    maintainer.start();
    cleanups.push(async () => maintainer.stop());

    // Bring the serving certificate's own renewal to 10 days after the CA's: the overlap must hold it back.
    clock.advance(caDueAt - servingRenewSpan + 10 * dayMs - clock.now());
    await waitFor('the overdue serving certificate to be renewed', () => rotations.includes('serving-cert'));
    const fresh = pki.state().servingCertificate;
    expect(fresh.issuerFingerprint).toBe(firstCa.fingerprint);
    expect(pki.state().cas).toHaveLength(1);

    clock.advance(caDueAt - clock.now() + 1_000);
    await waitFor('the new CA', () => rotations.includes('ca'));
    expect(pki.state().cas).toHaveLength(2);
    expect(rotations.filter((r) => r === 'ca')).toHaveLength(1);
    expect(bundles.length).toBeGreaterThan(0); // pushed to agents at once
    const newCa = pki.state().cas.find((c) => c.current)!;
    expect(newCa.fingerprint).not.toBe(firstCa.fingerprint);
    // Years of the old CA are left: agents learn the new one long before it matters.
    expect(firstCa.notAfterMs - clock.now()).toBeGreaterThan(365 * dayMs);

    // The serving certificate's renewal time comes, but within the overlap: it stays on the old CA.
    clock.advance(servingRenewAtMs(fresh.notBeforeMs, fresh.notAfterMs) - clock.now() + 1_000);
    await settle();
    expect(pki.state().servingCertificate.fingerprint).toBe(fresh.fingerprint);

    clock.advance(newCa.notBeforeMs + caOverlapMs - clock.now() + 1_000);
    await waitFor('the serving certificate to move to the new CA', () => pki.state().servingCertificate.fingerprint !== fresh.fingerprint);
    expect(pki.state().servingCertificate.issuerFingerprint).toBe(newCa.fingerprint);
  });

  it('retires an older CA from the bundle when it expires', async () => {
    const clock = new ManualClock(Date.now());
    const pki = await HubPki.load(await dir('pki'), ['localhost'], clock);
    await pki.rotateCa();
    await pki.rotateServingCert();
    const old = pki.state().cas.find((c) => !c.current)!;
    const rotations: string[] = [];
    const maintainer = new PkiMaintainer(pki, clock, (err) => { throw err; }, (what) => rotations.push(what));
    maintainer.start();
    cleanups.push(async () => maintainer.stop());
    clock.advance(old.notAfterMs - clock.now() + 1_000);
    await waitFor('the expired CA to leave the bundle', () => rotations.includes('expired-cas'));
    expect(pki.state().cas.some((c) => c.fingerprint === old.fingerprint)).toBe(false);
    expect(pki.state().cas.some((c) => c.current)).toBe(true);
  });
});

describe('agent trust bundle', () => {
  it('adopts a pushed bundle only once it is durably stored, without dropping the session', async () => {
    const hub = await startTestHub();
    cleanups.push(() => hub.close());
    const disk = await mountSmallDisk(1024 * 1024);
    cleanups.push(() => disk.close());
    const applied: string[][] = [];
    const trustStore = new TrustStore(disk.path);
    const core = new AgentCore(
      {
        clusterRegName: 'edge-trust',
        clusterType: 'EdgeCluster',
        clusterLabels: {},
        clusterSyncMode: 'Dual',
        clusterStatusUpdateFrequencyMs: 10_000,
        clusterLeaseDurationMs: 30_000,
        backoff: { baseMs: 1_000, capMs: 5_000, stableAfterMs: 60_000 },
        bootstrapToken: hub.token,
        registerTimeoutMs: 10_000,
        missedHeartbeatLimit: 3,
        agentVersion: 'unit-test',
      },
      {
        transport: hub.transport.client(),
        reader: new StaticClusterReader(clusterStatus('ok')),
        identityStore: new IdentityStore(disk.path),
        trust: { store: trustStore, apply: (pems) => applied.push(pems) },
        logger: silentLogger,
        clock: hub.clock,
      },
    );
    const states: AgentState[] = [];
    core.on('state', (s) => states.push(s));
    void core.start();
    cleanups.push(() => core.stop());
    await waitFor('ready', () => core.state.kind === 'ready');

    const ca1 = await createCertificateAuthority('ca-1');
    const ca2 = await createCertificateAuthority('ca-2');
    await disk.fill();
    expect(await hub.core.setTrustBundle({ caPems: [ca1.certPem, ca2.certPem], version: 2 })).toEqual(['edge-trust']);
    await settle(50);
    // The write failed: nothing adopted, nothing trusted, the session goes on.
    expect(core.trustBundle).toBeUndefined();
    expect(applied).toEqual([]);
    expect(await trustStore.load()).toEqual({ kind: 'missing' });

    // A bundle that is not all CAs is refused whatever the disk says.
    await disk.unfill();
    const leaf = await createServingCertificate(ca1, ['localhost']);
    await hub.core.setTrustBundle({ caPems: [ca1.certPem, leaf.certPem], version: 3 });
    await settle(50);
    expect(core.trustBundle).toBeUndefined();
    expect(applied).toEqual([]);

    await hub.core.setTrustBundle({ caPems: [ca1.certPem, ca2.certPem], version: 4 });
    await waitFor('the bundle adopted', () => core.trustBundle?.version === 4);
    expect(applied).toEqual([[ca1.certPem, ca2.certPem]]);
    expect(hub.core.trustBundleSent.get('edge-trust')).toBe(4);
    expect(await trustStore.load()).toEqual({ kind: 'ok', bundle: { version: 4, caPems: [ca1.certPem, ca2.certPem] } });
    expect((await stat(trustStore.path)).mode & 0o777).toBe(0o600);
    expect(states.filter((s) => s.kind === 'ready')).toHaveLength(1);
    expect(states.map((s) => s.kind)).not.toContain('backing-off');

    // The hub the stream verified is the authority, also after its data dir was reset (a lower version).
    await hub.core.setTrustBundle({ caPems: [ca2.certPem], version: 1 });
    await waitFor('the reset hub\'s bundle adopted', () => core.trustBundle?.version === 1);
    expect(applied.at(-1)).toEqual([ca2.certPem]);
    expect(states.map((s) => s.kind)).not.toContain('backing-off');

    // A damaged stored bundle is never trusted.
    const file = JSON.parse(await readFile(trustStore.path, 'utf8')) as { bundle: { version: number } };
    file.bundle.version = 5;
    await writeFile(trustStore.path, JSON.stringify(file));
    expect(await trustStore.load()).toMatchObject({ kind: 'damaged', reason: 'checksum mismatch' });
  });
});

/** SHA-256 fingerprint of the certificate a new TLS handshake on 127.0.0.1:port gets. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const fingerprint = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

describe('startHub', () => {
  it('serves a rotated certificate on the tunnel and the HTTPS API to new handshakes, in the same process', async () => {
    const dataDir = await dir('hub');
    const hub = await startHub(
      { dataDir, listenAddress: '127.0.0.1:0', apiAddress: '0.0.0.0:0', bootstrapTokens: ['abcdef.0123456789abcdef'] },
      { logger: silentLogger },
    );
    cleanups.push(() => hub.stop());
    expect(hub.apiUrl).toMatch(/^https:/);
    expect(hub.caFile).toBe(join(dataDir, 'pki', 'ca-bundle.crt'));
    const tunnelPort = Number(hub.tunnelAddress.split(':').at(-1));
    const apiPort = Number(hub.apiUrl.split(':').at(-1));
    const first = hub.pki.state().servingCertificate.fingerprint;
    expect(await servedFingerprint(tunnelPort)).toBe(first);
    expect(await servedFingerprint(apiPort)).toBe(first);

    await hub.pki.rotateCa();
    expect(hub.caPem).toBe(await readFile(hub.caFile, 'utf8'));
    expect(await servedFingerprint(tunnelPort)).toBe(first);
    const next = (await hub.pki.rotateServingCert()).servingCertificate.fingerprint;
    expect(next).not.toBe(first);
    expect(await servedFingerprint(tunnelPort)).toBe(next);
    expect(await servedFingerprint(apiPort)).toBe(next);
    const exposition = await hub.metrics.registry.metrics();
    const state = hub.pki.state();
    expect(exposition).toContain(`hawser_hub_trust_bundle_version ${state.bundleVersion}`);
    expect(exposition).toContain(`certificate="serving",fingerprint="${next}"} ${state.servingCertificate.notAfterMs / 1000}`);
    expect(exposition).not.toContain(`fingerprint="${first}"`);
    expect(exposition.match(/certificate="ca(-current)?"/g)).toHaveLength(2);
  });
});
