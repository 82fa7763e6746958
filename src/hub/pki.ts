import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../cache/index.js';
import {
  type CertificateSummary,
  type Clock,
  createCertificateAuthority,
  createServingCertificate,
  defaultTrustBundleLimits,
  ErrorCode,
  HawserError,
  splitPemBundle,
  summarizeCertificate,
  type TimerHandle,
  validateTrustBundle,
} from '../tunnel/index.js';

// The hub's own PKI in <data-dir>/pki, rotated with an overlap as kubeadm
// operators know it:
//   ca.crt, ca.key      the newest CA; it signs every new serving certificate
//   ca-bundle.crt       every CA agents should trust: the newest plus older
//                       ones not yet retired (0644); ca-bundle.version counts changes
//   hub.crt, hub.key    the serving certificate; hub.sans the names it covers
// `rotate ca` adds a CA to the bundle (agents get it over the tunnel) but keeps
// serving the old certificate; `rotate serving-cert` issues one from the newest
// CA; `rotate ca --finish` (or expiry) retires the older CAs, never the one
// that signed the serving certificate. Each pair of files is replaced so that a
// crash leaves either the old pair or a `.new` file to roll forward from.

export interface PkiState {
  /** Trusted CAs, newest first; `current` signs new serving certificates. */
  cas: Array<CertificateSummary & { current: boolean }>;
  bundleVersion: number;
  servingCertificate: CertificateSummary & { issuerFingerprint: string | undefined; renewAt: string };
  /** false: the operator supplied the serving certificate (--tls-cert-file); hawser does not rotate it. */
  managed: boolean;
}

export interface TrustBundle {
  caPems: string[];
  version: number;
}

/** When a serving certificate (or a CA) is due for rotation: past two thirds of its lifetime (kubelet's rule). */
export function servingRenewAtMs(notBeforeMs: number, notAfterMs: number): number {
  return notBeforeMs + Math.floor(((notAfterMs - notBeforeMs) * 2) / 3);
}

/**
 * A new CA signs the serving certificate only once agents have had this long
 * to learn it over their tunnels (offline ones when they reconnect): until
 * then the serving certificate's rotation waits, unless it would expire.
 */
export const caOverlapMs = 30 * 86_400_000;

/** When the automatic rotation may move the serving certificate, given the newest CA. */
export function servingRotationDueMs(serving: { notBeforeMs: number; notAfterMs: number }, newestCaNotBeforeMs: number): number {
  const wanted = Math.max(servingRenewAtMs(serving.notBeforeMs, serving.notAfterMs), newestCaNotBeforeMs + caOverlapMs);
  // Never let the serving certificate lapse while waiting for the overlap.
  return Math.min(wanted, serving.notAfterMs - 86_400_000);
}

function keyMatches(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** The CA in `pems` whose key signed `certPem`. */
function issuerOf(certPem: string, pems: readonly string[]): string | undefined {
  const cert = new X509Certificate(certPem);
  return pems.find((p) => {
    const ca = new X509Certificate(p);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  });
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Writes a key and its certificate so a crash never leaves a mismatched pair:
 * certificate to `.new`, key in place, then the certificate renamed over.
 */
async function writePair(certPath: string, keyPath: string, pair: { certPem: string; keyPem: string }): Promise<void> {
  await writeFileAtomic(`${certPath}.new`, pair.certPem, { mode: 0o644 });
  await writeFileAtomic(keyPath, pair.keyPem, { mode: 0o600 });
  await rename(`${certPath}.new`, certPath);
}

/** Reads a pair, rolling a half-finished writePair forward; undefined when missing or unusable. */
async function readPair(certPath: string, keyPath: string): Promise<{ certPem: string; keyPem: string } | undefined> {
  const keyPem = await readOptional(keyPath);
  const certPem = await readOptional(certPath);
  const pending = await readOptional(`${certPath}.new`);
  if (keyPem && pending && keyMatches(pending, keyPem) && !(certPem && keyMatches(certPem, keyPem))) {
    await rename(`${certPath}.new`, certPath);
    return { certPem: pending, keyPem };
  }
  if (pending !== undefined) await rm(`${certPath}.new`, { force: true });
  if (keyPem && certPem && keyMatches(certPem, keyPem)) return { certPem, keyPem };
  return undefined;
}

export type PkiListener = {
  servingChanged(serving: { certPem: string; keyPem: string }): void;
  bundleChanged(bundle: TrustBundle): void;
};

export class HubPki {
  private listeners: PkiListener[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    private readonly hosts: string[],
    private readonly clock: Clock,
    private ca: { certPem: string; keyPem: string } | undefined,
    private bundlePems: string[],
    private version: number,
    private serving: { certPem: string; keyPem: string },
  ) {}

  get bundleFile(): string {
    return join(this.dir, 'ca-bundle.crt');
  }

  get bundlePem(): string {
    return this.bundlePems.join('');
  }

  get servingPair(): { certPem: string; keyPem: string } {
    return this.serving;
  }

  get managed(): boolean {
    return this.ca !== undefined;
  }

  /** What agents are told to trust (undefined when the operator supplies the certificate). */
  trustBundle(): TrustBundle | undefined {
    return this.ca ? { caPems: [...this.bundlePems], version: this.version } : undefined;
  }

  onChange(listener: PkiListener): void {
    this.listeners.push(listener);
  }

  /** Loads (or creates) the PKI in `dir`; `hosts` are the names the serving certificate covers. */
  static async load(dir: string, hosts: string[], clock: Clock): Promise<HubPki> {
    let ca = await readPair(join(dir, 'ca.crt'), join(dir, 'ca.key'));
    if (!ca) {
      if ((await readOptional(join(dir, 'ca.crt'))) !== undefined) {
        throw new HawserError(ErrorCode.InvalidOption, `${join(dir, 'ca.key')} is missing or does not match ${join(dir, 'ca.crt')}: restore both from a backup`);
      }
      ca = await createCertificateAuthority(caName(clock), caValidDays, clock.now());
      await writePair(join(dir, 'ca.crt'), join(dir, 'ca.key'), ca);
    }
    let bundlePems = splitPemBundle((await readOptional(join(dir, 'ca-bundle.crt'))) ?? '');
    let version = Number((await readOptional(join(dir, 'ca-bundle.version')))?.trim() ?? '0') || 0;
    const caFp = summarizeCertificate(ca.certPem).fingerprint;
    // A first start, a data dir from before bundles, or a crash inside `rotate ca`: the newest CA must be in the bundle.
    if (!bundlePems.some((p) => summarizeCertificate(p).fingerprint === caFp)) {
      bundlePems = [ca.certPem, ...bundlePems];
      version += 1;
      await writeBundle(dir, bundlePems, version);
    }
    const sansFile = join(dir, 'hub.sans');
    let serving = await readPair(join(dir, 'hub.crt'), join(dir, 'hub.key'));
    // Regenerate the serving certificate when the names it must cover change, or it is unusable.
    if (!serving || ((await readOptional(sansFile)) ?? '') !== hosts.join(',') || !issuerOf(serving.certPem, bundlePems)) {
      serving = await createServingCertificate(ca, hosts, servingValidDays, clock.now());
      await writePair(join(dir, 'hub.crt'), join(dir, 'hub.key'), serving);
      await writeFileAtomic(sansFile, hosts.join(','), { mode: 0o644 });
    }
    return new HubPki(dir, hosts, clock, ca, bundlePems, version, serving);
  }

  /** An operator-supplied certificate: served as is, never rotated by hawser. */
  static external(serving: { certPem: string; keyPem: string }, clock: Clock): HubPki {
    return new HubPki('', [], clock, undefined, [], 0, serving);
  }

  state(): PkiState {
    const current = this.ca ? summarizeCertificate(this.ca.certPem).fingerprint : undefined;
    const cas = this.bundlePems
      .map((p) => ({ ...summarizeCertificate(p), current: false }))
      .map((c) => ({ ...c, current: c.fingerprint === current }))
      .sort((a, b) => b.notBeforeMs - a.notBeforeMs);
    const s = summarizeCertificate(this.serving.certPem);
    const issuer = this.ca ? issuerOf(this.serving.certPem, this.bundlePems) : undefined;
    return {
      cas,
      bundleVersion: this.version,
      servingCertificate: {
        ...s,
        issuerFingerprint: issuer ? summarizeCertificate(issuer).fingerprint : undefined,
        renewAt: new Date(servingRenewAtMs(s.notBeforeMs, s.notAfterMs)).toISOString(),
      },
      managed: this.managed,
    };
  }

  /** A new CA joins the bundle and signs from now on; the serving certificate stays until `rotateServingCert`. */
  rotateCa(): Promise<PkiState> {
    return this.serialized(async () => {
      if (this.bundlePems.length >= defaultTrustBundleLimits.maxCertificates) {
        throw new HawserError(
          ErrorCode.RotationIncomplete,
          `the trust bundle already holds ${this.bundlePems.length} CAs, as many as agents accept: finish the ongoing rotation first ("hawser rotate serving-cert", then "hawser rotate ca --finish")`,
        );
      }
      const next = await createCertificateAuthority(caName(this.clock), caValidDays, this.clock.now());
      // Bundle first: once the new CA signs anything, agents must be able to learn it.
      const bundle = [next.certPem, ...this.bundlePems];
      validateTrustBundle(bundle);
      await writeBundle(this.dir, bundle, this.version + 1);
      this.bundlePems = bundle;
      this.version += 1;
      await writePair(join(this.dir, 'ca.crt'), join(this.dir, 'ca.key'), next);
      this.ca = next;
      this.emitBundle();
      return this.state();
    });
  }

  /** A serving certificate from the newest CA, served to new handshakes at once. */
  rotateServingCert(): Promise<PkiState> {
    return this.serialized(async (ca) => {
      const serving = await createServingCertificate(ca, this.hosts, servingValidDays, this.clock.now());
      await writePair(join(this.dir, 'hub.crt'), join(this.dir, 'hub.key'), serving);
      this.serving = serving;
      for (const l of this.listeners) l.servingChanged(serving);
      return this.state();
    });
  }

  /** Retires every CA but the newest; refused while the serving certificate is signed by an older one. */
  finishCaRotation(): Promise<PkiState> {
    return this.serialized(async (ca) => {
      if (issuerOf(this.serving.certPem, [ca.certPem]) === undefined) {
        throw new HawserError(
          ErrorCode.RotationIncomplete,
          'the serving certificate is still signed by an older CA: run "hawser rotate serving-cert" first, then finish the CA rotation',
        );
      }
      if (this.bundlePems.length > 1) await this.replaceBundle([ca.certPem]);
      return this.state();
    });
  }

  /** Drops CAs past their validity from the bundle (never the newest, nor the serving certificate's issuer). */
  pruneExpired(): Promise<PkiState> {
    return this.serialized(async (ca) => {
      const now = this.clock.now();
      const issuer = issuerOf(this.serving.certPem, this.bundlePems);
      const keep = this.bundlePems.filter((p) => p === ca.certPem || p === issuer || summarizeCertificate(p).notAfterMs > now);
      if (keep.length !== this.bundlePems.length) await this.replaceBundle(keep);
      return this.state();
    });
  }

  private async replaceBundle(pems: string[]): Promise<void> {
    await writeBundle(this.dir, pems, this.version + 1);
    this.bundlePems = pems;
    this.version += 1;
    this.emitBundle();
  }

  private emitBundle(): void {
    const bundle = this.trustBundle()!;
    for (const l of this.listeners) l.bundleChanged(bundle);
  }

  /** One change at a time, in order; refused when the operator supplies the certificate. */
  private serialized<T>(step: (ca: { certPem: string; keyPem: string }) => Promise<T>): Promise<T> {
    const ca = this.ca;
    if (!ca) {
      return Promise.reject(new HawserError(ErrorCode.PkiUnmanaged, 'the hub serves an operator-supplied certificate (--tls-cert-file): rotate it outside hawser'));
    }
    const run = this.queue.then(() => step(this.ca!));
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** kubeadm's defaults: a CA for ten years, a serving certificate for about two (rotated at two thirds). */
export const caValidDays = 3650;
export const servingValidDays = 825;

function caName(clock: Clock): string {
  // A distinct subject per CA: during an overlap two CAs are trusted at once.
  return `hawser-hub-ca-${new Date(clock.now()).toISOString().replace(/[-:.]/g, '')}`;
}

async function writeBundle(dir: string, pems: string[], version: number): Promise<void> {
  await writeFileAtomic(join(dir, 'ca-bundle.crt'), pems.join(''), { mode: 0o644 });
  await writeFileAtomic(join(dir, 'ca-bundle.version'), `${version}\n`, { mode: 0o644 });
}

/**
 * Keeps the PKI current on the injected clock, with no operator: a new CA
 * joins the bundle (and goes to every agent) once the current CA passes two
 * thirds of its lifetime, years before it expires; the serving certificate
 * rotates past two thirds of its own lifetime, moving to a new CA only after
 * the overlap; expired CAs leave the bundle. Each timer is armed for the next
 * deadline (in steps Node can time).
 */
export class PkiMaintainer {
  private timer: TimerHandle | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly pki: HubPki,
    private readonly clock: Clock,
    private readonly onError: (err: unknown) => void,
    /** Called after an automatic change: what changed, and the state after it. */
    private readonly onRotated: (what: 'ca' | 'serving-cert' | 'expired-cas', state: PkiState) => void = () => undefined,
  ) {}

  start(): void {
    if (!this.pki.managed) return;
    this.arm();
  }

  /** Stops the timers and waits for a rotation already under way, so nothing writes after. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.running;
  }

  private caDueMs(state: PkiState): number {
    const current = state.cas.find((c) => c.current)!;
    // A full bundle takes no new CA (rotateCa refuses); the operator finishes the rotation first.
    return state.cas.length >= defaultTrustBundleLimits.maxCertificates ? Infinity : servingRenewAtMs(current.notBeforeMs, current.notAfterMs);
  }

  private servingDueMs(state: PkiState): number {
    return servingRotationDueMs(state.servingCertificate, state.cas.find((c) => c.current)!.notBeforeMs);
  }

  private nextDeadline(): number {
    const state = this.pki.state();
    const s = state.servingCertificate;
    const deadlines = [this.servingDueMs(state), this.caDueMs(state)];
    // Older CAs retire at expiry, except the serving certificate's issuer (pruneExpired keeps it).
    for (const ca of state.cas) if (!ca.current && ca.fingerprint !== s.issuerFingerprint) deadlines.push(ca.notAfterMs);
    return Math.min(...deadlines);
  }

  private arm(): void {
    if (this.stopped) return;
    const left = this.nextDeadline() - this.clock.now();
    if (left > 0) {
      this.timer = this.clock.setTimeout(() => this.arm(), Math.min(left, 2 ** 31 - 1));
      return;
    }
    this.running = this.maintain().then(
      () => this.arm(),
      (err: unknown) => {
        this.onError(err);
        // Try again later rather than spin on a failing disk.
        if (!this.stopped) this.timer = this.clock.setTimeout(() => this.arm(), 60_000);
      },
    );
  }

  private async maintain(): Promise<void> {
    const before = this.pki.state();
    if (this.clock.now() >= this.caDueMs(before)) this.onRotated('ca', await this.pki.rotateCa());
    if (this.clock.now() >= this.servingDueMs(this.pki.state())) this.onRotated('serving-cert', await this.pki.rotateServingCert());
    const pruned = await this.pki.pruneExpired();
    if (pruned.bundleVersion !== before.bundleVersion && pruned.cas.length < before.cas.length) this.onRotated('expired-cas', pruned);
  }
}
