import { readFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { defaultMaxObjectBytes } from '../api/index.js';
import { writeFileAtomic } from '../cache/index.js';
import {
  assertCertificatePem,
  type Clock,
  defaultMaxConcurrentStreams,
  defaultMaxFrameBytes,
  defaultTlsHandshakeTimeoutMs,
  ErrorCode,
  Feature,
  GrpcServerTransport,
  HawserError,
  systemClock,
} from '../tunnel/index.js';
import { generateOperatorToken, OperatorAuthenticator, type OperatorTokenEntry, parseOperatorTokens, renderOperatorTokens } from './auth.js';
import { dataDirError, type DataDirLock, lockDataDir, prepareDataDir, privateSubdir } from './datadir.js';
import { createHubApi, type HubApiServer } from './http.js';
import { defaultMaxRequestBytes } from './resources-http.js';
import { clusterNamespacesOf, ResourceService, resourceStoreOf } from './resources.js';
import { Deployer } from './deployer/index.js';
import { handshakeAdmissionFor } from './admission.js';
import { defaultHubCoreOptions, HubCore } from './hub.js';
import { HubMetrics } from './metrics.js';
import { HubProxy } from './proxy.js';
import { HubPki, PkiMaintainer } from './pki.js';
import { EmbeddedStore, type HubStore, SealingStore } from './store.js';
import { defaultSyncOptions, syncHandlerFactory, SyncSessions } from './sync/index.js';
import { bootstrapTokenPattern, generateBootstrapToken, parseBootstrapTokens } from './tokens.js';

export interface HubOptions {
  dataDir: string;
  /** Tunnel listen address (agents dial this). */
  listenAddress: string;
  /** Operators' HTTP API and /metrics. */
  apiAddress: string;
  /**
   * Accepted bootstrap tokens (with bootstrapTokenFile's). None from either:
   * one is generated into <data-dir>/bootstrap-token and kept there.
   */
  bootstrapTokens: string[];
  /** File of bootstrap tokens, one a line. */
  bootstrapTokenFile?: string;
  /** Operators' tokens (see auth.ts); default <data-dir>/operator-tokens, generated with one admin. */
  operatorTokensFile?: string;
  /** Serve /metrics without a token (default: a viewer token is needed). */
  metricsAnonymous: boolean;
  /** Serve the API over TLS on loopback too (always off loopback): kubectl sends a token only over TLS. */
  apiTls: boolean;
  autoApprove: boolean;
  clusterLeaseDurationMs: number;
  /** Own certificate; otherwise one is generated from the data dir's CA. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Extra DNS names / IPs for the generated serving certificate. */
  tlsSans: string[];
  maxFrameBytes: number;
  keepaliveTimeMs: number;
  /** A TLS handshake on the tunnel not finished in this long is dropped. */
  tlsHandshakeTimeoutMs: number;
  /** HTTP/2 streams one agent connection may have open at once. */
  maxConcurrentStreams: number;
  /** Streams still registering (not yet welcomed), at most, per hub. */
  maxUnwelcomedStreams: number;
  /**
   * Bounds of the adaptive limit on handshakes (hello to welcome) in progress at once; a hello past it
   * waits for a slot while one is due soon, else HAWSER_HUB_BUSY with a retry-after. Equal bounds: a fixed limit.
   */
  minConcurrentHandshakes: number;
  maxConcurrentHandshakes: number;
  /** Pending registration requests one bootstrap token may hold, and all tokens together. */
  maxPendingRegistrationsPerToken: number;
  maxPendingRegistrations: number;
  /** An undecided registration request is dropped after this long (its name comes free). */
  pendingRegistrationTtlMs: number;
  /** Lifetime of a cluster credential; agents renew it in its last third. */
  credentialTtlMs: number;
  /** Largest object an apply may store (as JSON), like etcd's request limit; sync sends none larger. */
  maxObjectBytes: number;
  /** Sync sends objects larger than this in resumable chunks of this size (agents that offer "chunks"). */
  syncChunkBytes: number;
  /** Sync bytes on the wire not yet acknowledged, per cluster (--sync-in-flight-bytes; see SyncOptions.inFlightBytes). */
  syncInFlightBytes: number;
}

export const defaultHubListenAddress = '0.0.0.0:7100';
/** --max-object-bytes at most: objects this large belong in a volume, not in a manifest. */
const maxMaxObjectBytes = 64 * 1024 * 1024;
export const defaultHubApiAddress = '127.0.0.1:7101';

export function defaultHubOptions(): HubOptions {
  return {
    dataDir: '.hawser/hub',
    listenAddress: defaultHubListenAddress,
    apiAddress: defaultHubApiAddress,
    bootstrapTokens: [],
    autoApprove: false,
    metricsAnonymous: false,
    apiTls: false,
    clusterLeaseDurationMs: defaultHubCoreOptions.clusterLeaseDurationMs,
    tlsSans: [],
    maxFrameBytes: defaultMaxFrameBytes,
    keepaliveTimeMs: 120_000,
    tlsHandshakeTimeoutMs: defaultTlsHandshakeTimeoutMs,
    maxConcurrentStreams: defaultMaxConcurrentStreams,
    maxUnwelcomedStreams: defaultHubCoreOptions.maxUnwelcomedStreams,
    minConcurrentHandshakes: defaultHubCoreOptions.handshakes.limit.min,
    maxConcurrentHandshakes: defaultHubCoreOptions.handshakes.limit.max,
    maxPendingRegistrationsPerToken: defaultHubCoreOptions.maxPendingPerToken,
    maxPendingRegistrations: defaultHubCoreOptions.maxPendingTotal,
    pendingRegistrationTtlMs: defaultHubCoreOptions.pendingRegistrationTtlMs,
    credentialTtlMs: defaultHubCoreOptions.credentialTtlMs,
    maxObjectBytes: defaultMaxObjectBytes,
    syncChunkBytes: defaultSyncOptions.chunkBytes,
    syncInFlightBytes: defaultSyncOptions.inFlightBytes,
  };
}

/** Merges and validates; unknown keys and bad values are named. */
export function resolveHubOptions(partial: Partial<HubOptions>): HubOptions {
  const defaults = defaultHubOptions();
  const optional = ['tlsCertFile', 'tlsKeyFile', 'bootstrapTokenFile', 'operatorTokensFile'];
  for (const key of Object.keys(partial)) {
    if (!(key in defaults) && !optional.includes(key)) {
      throw new HawserError(ErrorCode.InvalidOption, `unknown hub option "${key}"; known: ${Object.keys(defaults).join(', ')}`);
    }
  }
  const o = { ...defaults, ...partial };
  for (const [i, t] of o.bootstrapTokens.entries()) {
    if (!bootstrapTokenPattern.test(t)) {
      throw new HawserError(ErrorCode.InvalidBootstrapToken, `hub option bootstrapTokens[${i}] must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})`);
    }
  }
  if (o.clusterLeaseDurationMs < 1_000) {
    throw new HawserError(ErrorCode.InvalidOption, `cluster lease duration must be at least 1s, got ${o.clusterLeaseDurationMs}ms`);
  }
  if (Boolean(o.tlsCertFile) !== Boolean(o.tlsKeyFile)) {
    throw new HawserError(ErrorCode.InvalidOption, 'TLS certificate and key files must be given together');
  }
  // An agent renews in the credential's last third, reconnecting to do so: an hour is the least that is not a churn.
  if (o.credentialTtlMs < 3_600_000) {
    throw new HawserError(ErrorCode.InvalidOption, `credential TTL must be at least 1h, got ${o.credentialTtlMs}ms`);
  }
  if (!Number.isInteger(o.maxObjectBytes) || o.maxObjectBytes < 1024 || o.maxObjectBytes > maxMaxObjectBytes) {
    throw new HawserError(ErrorCode.InvalidOption, `max object bytes must be a whole number from 1024 to ${maxMaxObjectBytes}, got ${o.maxObjectBytes}`);
  }
  if (!Number.isInteger(o.syncInFlightBytes) || o.syncInFlightBytes < 4096 || o.syncInFlightBytes > 64 * 1024 * 1024) {
    throw new HawserError(ErrorCode.InvalidOption, `sync in-flight bytes must be a whole number from 4096 to 67108864, got ${o.syncInFlightBytes}`);
  }
  if (!Number.isInteger(o.syncChunkBytes) || o.syncChunkBytes < 1024 || o.syncChunkBytes > 1024 * 1024) {
    throw new HawserError(ErrorCode.InvalidOption, `sync chunk bytes must be a whole number from 1024 to 1048576, got ${o.syncChunkBytes}`);
  }
  if (o.pendingRegistrationTtlMs < 60_000) {
    throw new HawserError(ErrorCode.InvalidOption, `pending registration TTL must be at least 1m, got ${o.pendingRegistrationTtlMs}ms`);
  }
  if (!(Number.isInteger(o.minConcurrentHandshakes) && o.minConcurrentHandshakes >= 1 && o.maxConcurrentHandshakes >= o.minConcurrentHandshakes)) {
    throw new HawserError(
      ErrorCode.InvalidOption,
      `concurrent handshakes: min (${o.minConcurrentHandshakes}) must be a whole number of at least 1 and at most max (${o.maxConcurrentHandshakes})`,
    );
  }
  if (o.maxPendingRegistrationsPerToken < 1 || o.maxPendingRegistrations < o.maxPendingRegistrationsPerToken) {
    throw new HawserError(
      ErrorCode.InvalidOption,
      `pending registrations: per token (${o.maxPendingRegistrationsPerToken}) must be at least 1 and at most the total (${o.maxPendingRegistrations})`,
    );
  }
  return o;
}

export interface RunningHub {
  /** host:port agents dial. */
  tunnelAddress: string;
  /** http://host:port of the API on loopback, https:// anywhere else. */
  apiUrl: string;
  /** Where the operators' tokens are read from (or were generated into). */
  operatorTokensFile: string;
  /** PEM of the CAs agents should trust (the trust bundle, or the operator's certificate). */
  caPem: string;
  caFile: string;
  pki: HubPki;
  bootstrapTokens: string[];
  core: HubCore;
  metrics: HubMetrics;
  stop(): Promise<void>;
}

/** Reads the file, or creates it (atomically, 0600 unless said) when it does not exist. */
async function readOrCreate(path: string, create: () => Promise<string>, mode = 0o600): Promise<{ text: string; created: boolean }> {
  try {
    return { text: await readFile(path, 'utf8'), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const text = await create();
    await writeFileAtomic(path, text, { mode });
    return { text, created: true };
  }
}

/** A file the operator named: a missing or unreadable one is their mistake, said in one sentence. */
async function readNamedFile(path: string, what: string, code: ErrorCode): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new HawserError(code, `cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

async function loadBootstrapTokens(o: HubOptions): Promise<string[]> {
  const tokens = [...o.bootstrapTokens];
  if (o.bootstrapTokenFile) {
    const text = await readNamedFile(o.bootstrapTokenFile, 'bootstrap token file', ErrorCode.InvalidBootstrapToken);
    tokens.push(...parseBootstrapTokens(text, o.bootstrapTokenFile));
  }
  if (tokens.length > 0) return tokens;
  const file = join(o.dataDir, 'bootstrap-token');
  return parseBootstrapTokens((await readOrCreate(file, async () => `${generateBootstrapToken()}\n`)).text, file);
}

async function loadOperatorTokens(o: HubOptions, logger: Logger): Promise<{ entries: OperatorTokenEntry[]; file: string }> {
  if (o.operatorTokensFile) {
    const text = await readNamedFile(o.operatorTokensFile, 'operator tokens file', ErrorCode.InvalidOperatorTokens);
    return { entries: parseOperatorTokens(text, o.operatorTokensFile), file: o.operatorTokensFile };
  }
  const file = join(o.dataDir, 'operator-tokens');
  const { text, created } = await readOrCreate(file, async () =>
    renderOperatorTokens([{ name: 'admin', role: 'admin', token: generateOperatorToken() }]),
  );
  // Where the token is, never the token itself.
  if (created) logger.info({ file }, 'generated an admin operator token; hawser CLI users need it (see README: operators)');
  return { entries: parseOperatorTokens(text, file), file };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

async function loadTls(o: HubOptions, clock: Clock): Promise<{ pki: HubPki; caPem: string; caFile: string }> {
  const pki = await privateSubdir(o.dataDir, 'pki');
  if (o.tlsCertFile && o.tlsKeyFile) {
    const certPem = await readNamedFile(o.tlsCertFile, 'TLS certificate file', ErrorCode.InvalidOption);
    assertCertificatePem(certPem, o.tlsCertFile);
    const keyPem = await readNamedFile(o.tlsKeyFile, 'TLS key file', ErrorCode.InvalidOption);
    return { pki: HubPki.external({ certPem, keyPem }, clock), caPem: certPem, caFile: o.tlsCertFile };
  }
  const loaded = await HubPki.load(pki, ['localhost', '127.0.0.1', '::1', ...o.tlsSans], clock);
  // Agents and CLIs given this file trust every CA of an ongoing rotation.
  return { pki: loaded, caPem: loaded.bundlePem, caFile: loaded.bundleFile };
}

function splitHostPort(address: string, what: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new HawserError(ErrorCode.InvalidOption, `${what} "${address}" must be host:port`);
  }
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

/** The embedded store, with fed Secrets sealed by <data-dir>/secret-key (created 0600 on first start). */
async function openStore(dataDir: string, logger: Logger): Promise<HubStore> {
  const inner = await EmbeddedStore.open(join(dataDir, 'store'));
  try {
    const keyFile = join(dataDir, 'secret-key');
    const { store, keyCreated } = await SealingStore.open(inner, keyFile);
    if (keyCreated) logger.info({ path: keyFile }, 'created the key that encrypts Secrets in the hub store; back it up with the data dir');
    return store;
  } catch (err) {
    await inner.close().catch(() => undefined);
    throw err;
  }
}

export async function startHub(partial: Partial<HubOptions>, deps: { logger: Logger; clock?: Clock }): Promise<RunningHub> {
  const o = resolveHubOptions(partial);
  const api = splitHostPort(o.apiAddress, 'API address');
  splitHostPort(o.listenAddress, 'listen address');
  await prepareDataDir(o.dataDir);
  // The lock comes before anything in the data dir is read or written.
  const lock = await lockDataDir(o.dataDir);
  let store: HubStore;
  let tls: Awaited<ReturnType<typeof loadTls>>;
  let bootstrapTokens: string[];
  let operators: Awaited<ReturnType<typeof loadOperatorTokens>>;
  try {
    tls = await loadTls(o, deps.clock ?? systemClock);
    bootstrapTokens = await loadBootstrapTokens(o);
    operators = await loadOperatorTokens(o, deps.logger);
    store = await openStore(o.dataDir, deps.logger);
  } catch (err) {
    await lock.release();
    // File-system errors in the data dir become the operator's one sentence; coded errors pass as they are.
    throw dataDirError(o.dataDir, err);
  }
  return serve(o, api, { tls, bootstrapTokens, operators, store, lock }, deps);
}

async function serve(
  o: HubOptions,
  api: { host: string; port: number },
  loaded: {
    tls: Awaited<ReturnType<typeof loadTls>>;
    bootstrapTokens: string[];
    operators: { entries: OperatorTokenEntry[]; file: string };
    store: HubStore;
    lock: DataDirLock;
  },
  deps: { logger: Logger; clock?: Clock },
): Promise<RunningHub> {
  const { tls, bootstrapTokens, store, lock } = loaded;
  const clock = deps.clock ?? systemClock;
  const serving = tls.pki.servingPair;
  const metrics = new HubMetrics();
  const core = new HubCore(
    {
      ...defaultHubCoreOptions,
      bootstrapTokens,
      autoApprove: o.autoApprove,
      clusterLeaseDurationMs: o.clusterLeaseDurationMs,
      maxUnwelcomedStreams: o.maxUnwelcomedStreams,
      handshakes: handshakeAdmissionFor(o.minConcurrentHandshakes, o.maxConcurrentHandshakes),
      maxPendingPerToken: o.maxPendingRegistrationsPerToken,
      maxPendingTotal: o.maxPendingRegistrations,
      pendingRegistrationTtlMs: o.pendingRegistrationTtlMs,
      credentialTtlMs: o.credentialTtlMs,
      features: [Feature.Sync, Feature.Chunks, Feature.CompressionDeflate, Feature.ProxyStreams, Feature.LocalDigest, Feature.ProxyPrelude, Feature.ProxyPool, Feature.ReportDelta],
    },
    store,
    metrics,
    deps.logger,
    clock,
  );
  // Manifests of each cluster's namespace go to its agent (src/hub/sync).
  const syncSessions = new SyncSessions();
  core.registerHandler(
    syncHandlerFactory({
      store,
      logger: deps.logger,
      metrics,
      sessions: syncSessions,
      // Four chunks in flight keep a 300 ms link busy and a heartbeat ack behind at most four chunks.
      options: { maxObjectBytes: o.maxObjectBytes, chunkBytes: o.syncChunkBytes, chunkWindowBytes: 4 * o.syncChunkBytes, inFlightBytes: o.syncInFlightBytes },
    }),
  );
  let httpServer: HubApiServer | undefined;
  let deployer: Deployer | undefined;
  const maintainer = new PkiMaintainer(
    tls.pki,
    clock,
    (err) => deps.logger.error({ err }, 'automatic certificate rotation failed; will try again'),
    (what, state) => deps.logger.info({ what, bundleVersion: state.bundleVersion, servingIssuer: state.servingCertificate.issuerFingerprint }, 'certificates rotated automatically'),
  );
  // Alerts can watch expiry (a rotation replaces the series).
  const exportPki = () => {
    const state = tls.pki.state();
    metrics.certificateExpiry.reset();
    metrics.certificateExpiry.set({ certificate: 'serving', fingerprint: state.servingCertificate.fingerprint }, state.servingCertificate.notAfterMs / 1000);
    for (const ca of state.cas) metrics.certificateExpiry.set({ certificate: ca.current ? 'ca-current' : 'ca', fingerprint: ca.fingerprint }, ca.notAfterMs / 1000);
    metrics.trustBundleVersion.set(state.bundleVersion);
  };
  exportPki();
  try {
    const transport = new GrpcServerTransport({
      address: o.listenAddress,
      tls: { certPem: serving.certPem, keyPem: serving.keyPem },
      maxFrameBytes: o.maxFrameBytes,
      keepaliveTimeMs: o.keepaliveTimeMs,
      tlsHandshakeTimeoutMs: o.tlsHandshakeTimeoutMs,
      maxConcurrentStreams: o.maxConcurrentStreams,
    });
    await core.setTrustBundle(tls.pki.trustBundle());
    const tunnelAddress = await core.start(transport);
    // Subscriptions -> per-cluster Manifests in the store (what sync sends to agents).
    deployer = new Deployer(store, { clock, log: (line) => deps.logger.warn(line) });
    deployer.start();
    const apiTls = o.apiTls || !isLoopback(api.host);
    const server = createHubApi({
      store,
      registrar: core.registrar,
      metrics,
      logger: deps.logger,
      authenticator: new OperatorAuthenticator(loaded.operators.entries),
      metricsAnonymous: o.metricsAnonymous,
      // Off loopback, tokens cross a network: only over TLS, with the tunnel's certificate.
      ...(apiTls ? { tls: { certPem: serving.certPem, keyPem: serving.keyPem } } : {}),
      pki: tls.pki,
      trustBundleSent: () => core.trustBundleSent,
      syncSessions,
      clusterView: (c) => core.clusterView(c),
      resources: new ResourceService({
        store: resourceStoreOf(store),
        clusterNamespaces: () => clusterNamespacesOf(store),
        maxObjectBytes: o.maxObjectBytes,
      }),
      // A request holds a few objects at the largest, or a directory of ordinary ones.
      maxRequestBytes: Math.max(defaultMaxRequestBytes, 4 * o.maxObjectBytes),
      proxy: new HubProxy({ sessions: core, store, metrics, logger: deps.logger, now: () => clock.now() }),
    });
    tls.pki.onChange({
      // New handshakes get the new certificate; live connections keep their TLS session.
      servingChanged: (next) => {
        transport.updateServingCertificate(next);
        if (apiTls) (server as HttpsServer).setSecureContext({ cert: next.certPem, key: next.keyPem });
        exportPki();
      },
      bundleChanged: (bundle) => {
        exportPki();
        void core.setTrustBundle(bundle);
      },
    });
    maintainer.start();
    httpServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(api.port, api.host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    const apiHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    const running: RunningHub = {
      tunnelAddress,
      apiUrl: `${apiTls ? 'https' : 'http'}://${apiHost}:${bound.port}`,
      operatorTokensFile: loaded.operators.file,
      // The bundle as it is now: rotations change it.
      get caPem() {
        return tls.pki.managed ? tls.pki.bundlePem : tls.caPem;
      },
      caFile: tls.caFile,
      pki: tls.pki,
      bootstrapTokens,
      core,
      metrics,
      stop: async () => {
        await maintainer.stop();
        await core.stop();
        await deployer?.stop();
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        await store.close();
        await lock.release();
      },
    };
    return running;
  } catch (err) {
    await maintainer.stop();
    await core.stop().catch(() => undefined);
    await deployer?.stop().catch(() => undefined);
    httpServer?.close();
    await store.close().catch(() => undefined);
    await lock.release();
    throw err;
  }
}
