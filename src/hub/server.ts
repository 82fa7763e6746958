import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import {
  assertCertificatePem,
  type Clock,
  createCertificateAuthority,
  createServingCertificate,
  defaultMaxConcurrentStreams,
  defaultMaxFrameBytes,
  defaultTlsHandshakeTimeoutMs,
  ErrorCode,
  GrpcServerTransport,
  HawserError,
  systemClock,
} from '../tunnel/index.js';
import { createHubApi } from './http.js';
import { defaultHubCoreOptions, HubCore } from './hub.js';
import { HubMetrics } from './metrics.js';
import { EmbeddedStore } from './store.js';
import { bootstrapTokenPattern, generateBootstrapToken } from './tokens.js';

export interface HubOptions {
  dataDir: string;
  /** Tunnel listen address (agents dial this). */
  listenAddress: string;
  /** Operators' HTTP API and /metrics. */
  apiAddress: string;
  /** Accepted bootstrap tokens; empty: one is generated and kept in the data dir. */
  bootstrapTokens: string[];
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
}

export const defaultHubListenAddress = '0.0.0.0:7100';
export const defaultHubApiAddress = '127.0.0.1:7101';

export function defaultHubOptions(): HubOptions {
  return {
    dataDir: '.hawser/hub',
    listenAddress: defaultHubListenAddress,
    apiAddress: defaultHubApiAddress,
    bootstrapTokens: [],
    autoApprove: false,
    clusterLeaseDurationMs: defaultHubCoreOptions.clusterLeaseDurationMs,
    tlsSans: [],
    maxFrameBytes: defaultMaxFrameBytes,
    keepaliveTimeMs: 30_000,
    tlsHandshakeTimeoutMs: defaultTlsHandshakeTimeoutMs,
    maxConcurrentStreams: defaultMaxConcurrentStreams,
    maxUnwelcomedStreams: defaultHubCoreOptions.maxUnwelcomedStreams,
  };
}

/** Merges and validates; unknown keys and bad values are named. */
export function resolveHubOptions(partial: Partial<HubOptions>): HubOptions {
  const defaults = defaultHubOptions();
  for (const key of Object.keys(partial)) {
    if (!(key in defaults) && key !== 'tlsCertFile' && key !== 'tlsKeyFile') {
      throw new HawserError(ErrorCode.InvalidOption, `unknown hub option "${key}"; known: ${Object.keys(defaults).join(', ')}`);
    }
  }
  const o = { ...defaults, ...partial };
  for (const t of o.bootstrapTokens) {
    if (!bootstrapTokenPattern.test(t)) {
      throw new HawserError(ErrorCode.InvalidOption, `bootstrap token "${t.slice(0, 6)}…" must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})`);
    }
  }
  if (o.clusterLeaseDurationMs < 1_000) {
    throw new HawserError(ErrorCode.InvalidOption, `cluster lease duration must be at least 1s, got ${o.clusterLeaseDurationMs}ms`);
  }
  if (Boolean(o.tlsCertFile) !== Boolean(o.tlsKeyFile)) {
    throw new HawserError(ErrorCode.InvalidOption, 'TLS certificate and key files must be given together');
  }
  return o;
}

export interface RunningHub {
  /** host:port agents dial. */
  tunnelAddress: string;
  /** http://host:port of the API. */
  apiUrl: string;
  /** PEM of the CA agents should trust. */
  caPem: string;
  caFile: string;
  bootstrapTokens: string[];
  core: HubCore;
  metrics: HubMetrics;
  stop(): Promise<void>;
}

async function readOrCreate(path: string, create: () => Promise<string>): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const value = await create();
    await writeFile(path, value, { mode: 0o600 });
    return value;
  }
}

async function loadTls(o: HubOptions): Promise<{ certPem: string; keyPem: string; caPem: string; caFile: string }> {
  const pki = join(o.dataDir, 'pki');
  await mkdir(pki, { recursive: true });
  if (o.tlsCertFile && o.tlsKeyFile) {
    const certPem = await readFile(o.tlsCertFile, 'utf8');
    assertCertificatePem(certPem, o.tlsCertFile);
    return { certPem, keyPem: await readFile(o.tlsKeyFile, 'utf8'), caPem: certPem, caFile: o.tlsCertFile };
  }
  let ca: { certPem: string; keyPem: string } | undefined;
  const caFile = join(pki, 'ca.crt');
  const caPem = await readOrCreate(caFile, async () => {
    ca = await createCertificateAuthority('hawser-hub-ca');
    await writeFile(join(pki, 'ca.key'), ca.keyPem, { mode: 0o600 });
    return ca.certPem;
  });
  ca ??= { certPem: caPem, keyPem: await readFile(join(pki, 'ca.key'), 'utf8') };
  const hosts = ['localhost', '127.0.0.1', '::1', ...o.tlsSans];
  const sansFile = join(pki, 'hub.sans');
  const previousSans = await readFile(sansFile, 'utf8').catch(() => '');
  // Regenerate the serving certificate when the names it must cover change.
  if (previousSans !== hosts.join(',')) {
    const serving = await createServingCertificate(ca, hosts);
    await writeFile(join(pki, 'hub.crt'), serving.certPem, { mode: 0o644 });
    await writeFile(join(pki, 'hub.key'), serving.keyPem, { mode: 0o600 });
    await writeFile(sansFile, hosts.join(','));
  }
  return {
    certPem: await readFile(join(pki, 'hub.crt'), 'utf8'),
    keyPem: await readFile(join(pki, 'hub.key'), 'utf8'),
    caPem,
    caFile,
  };
}

function splitHostPort(address: string, what: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new HawserError(ErrorCode.InvalidOption, `${what} "${address}" must be host:port`);
  }
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

export async function startHub(partial: Partial<HubOptions>, deps: { logger: Logger; clock?: Clock }): Promise<RunningHub> {
  const o = resolveHubOptions(partial);
  const api = splitHostPort(o.apiAddress, 'API address');
  splitHostPort(o.listenAddress, 'listen address');
  await mkdir(o.dataDir, { recursive: true });
  const tls = await loadTls(o);
  const bootstrapTokens =
    o.bootstrapTokens.length > 0
      ? o.bootstrapTokens
      : [(await readOrCreate(join(o.dataDir, 'bootstrap-token'), async () => generateBootstrapToken())).trim()];

  const store = await EmbeddedStore.open(join(o.dataDir, 'store'));
  const metrics = new HubMetrics();
  const core = new HubCore(
    {
      ...defaultHubCoreOptions,
      bootstrapTokens,
      autoApprove: o.autoApprove,
      clusterLeaseDurationMs: o.clusterLeaseDurationMs,
      maxUnwelcomedStreams: o.maxUnwelcomedStreams,
    },
    store,
    metrics,
    deps.logger,
    deps.clock ?? systemClock,
  );
  let httpServer: Server | undefined;
  try {
    const tunnelAddress = await core.start(
      new GrpcServerTransport({
        address: o.listenAddress,
        tls: { certPem: tls.certPem, keyPem: tls.keyPem },
        maxFrameBytes: o.maxFrameBytes,
        keepaliveTimeMs: o.keepaliveTimeMs,
        tlsHandshakeTimeoutMs: o.tlsHandshakeTimeoutMs,
        maxConcurrentStreams: o.maxConcurrentStreams,
      }),
    );
    const server = createHubApi({ store, registrar: core.registrar, metrics, logger: deps.logger });
    httpServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(api.port, api.host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    const apiHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    const running: RunningHub = {
      tunnelAddress,
      apiUrl: `http://${apiHost}:${bound.port}`,
      caPem: tls.caPem,
      caFile: tls.caFile,
      bootstrapTokens,
      core,
      metrics,
      stop: async () => {
        await core.stop();
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        await store.close();
      },
    };
    return running;
  } catch (err) {
    await core.stop().catch(() => undefined);
    httpServer?.close();
    await store.close().catch(() => undefined);
    throw err;
  }
}
