import { chmod, readdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { defaultMaxObjectBytes, type SyncMode, syncModes, dns1123LabelProblem, labelProblems } from '../api/core.js';
import { type CacheQuarantine, ensurePrivateDir, loadOrCreateSealKey, OfflineCache, type SealKey } from '../cache/index.js';
import { type Clock, ErrorCode, Feature, GrpcClientTransport, HawserError, defaultBackoffPolicy } from '../tunnel/index.js';
import { AgentCore, type AgentCoreOptions } from './agent.js';
import { ApplyEngine } from './apply.js';
import type { Applier } from './apply-report.js';
import { effectiveSyncMode, parseFeatureGates, SyncApplyLoop } from './sync-apply.js';
import { desiredSetPrefixes, SyncReceiver } from './sync-receiver.js';
import { PushReceiver } from './sync-push.js';
import { readSyncState, syncStateCacheKey } from './sync-state.js';
import { CacheMonitor } from './cache-monitor.js';
import { identityFileName, IdentityStore } from './identity.js';
import { groupPatternsFlag, type ImpersonationPolicy, parseImpersonationPatterns, userPatternsFlag } from './impersonation-policy.js';
import { type ClusterReader, KubeClusterReader } from './kube.js';
import { loadKubeConfig } from './kubeconfig.js';
import { trustBundleFileName, TrustStore } from './trust.js';
import { AgentMetrics, serveAgentMetrics } from './metrics.js';
import { defaultProxyStreamPool, ProxyBackend } from './proxy.js';
import type { Server } from 'node:http';

export interface AgentOptions {
  /** Hub tunnel address: host:port (TLS). */
  parentUrl: string;
  /** CA that signed the hub's certificate (the hub writes <data-dir>/pki/ca-bundle.crt, every CA it trusts; ca.crt is the newest alone). */
  parentCaFile?: string;
  clusterRegName: string;
  clusterRegNamespace?: string;
  clusterType: string;
  clusterLabels: Record<string, string>;
  clusterSyncMode: SyncMode;
  clusterStatusUpdateFrequencyMs: number;
  clusterLeaseDurationMs: number;
  reconnectPeriodMs: number;
  maxReconnectPeriodMs: number;
  /** A connection up this long resets the backoff. */
  stableConnectionMs: number;
  /** After a healthy connection (welcomed, a heartbeat acked) drops, the first redial waits uniform in [0, this), at most max-reconnect-period; 0 disables. */
  reconnectJitterMs: number;
  /** If that quick redial fails, the next waits uniform in [0, this) before the exponential backoff; 0 disables. */
  reconnectSecondJitterMs: number;
  cacheDir: string;
  bootstrapToken?: string;
  kubeconfig?: string;
  registerTimeoutMs: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Offer compressed sync (feature compression.deflate.k8s1); false: the hub sends frames bare. */
  enableCompression: boolean;
  /** Clusternet's --feature-gates, e.g. "AppPusher=true" (default: every gate false). */
  featureGates: string;
  /** How often the cached desired set is re-applied (drift), besides every sync. */
  applyIntervalMs: number;
  /** The largest object sync takes (decoded bytes); larger ones are reported on their subscription, not stored. */
  maxObjectBytes: number;
  /** Desired-state bytes the cache holds at most; 0: no limit. */
  cacheSizeLimitBytes: number;
  /**
   * --enable-cache / --offline-cache-enabled: keep the desired state across
   * restarts. false: a set cached before is dropped at start and fetched
   * again from the hub (it is still held while the agent runs: the apply
   * loop reconciles from it).
   */
  cacheEnabled: boolean;
  /** --use-cache-when-disconnected: reconcile from the cached set while the hub is unreachable; false: only while a sync session is up. */
  useCacheWhenDisconnected: boolean;
  /** --cache-max-age: a cached set the hub has not confirmed for longer is reported stale (never removed for it); 0: never stale. */
  cacheMaxAgeMs: number;
  /** --cache-cleanup-interval: how often the cache's size and age are checked (and leftovers of crashed opens removed). */
  cacheCleanupIntervalMs: number;
  /** Users and groups the proxy may impersonate (exact names and * patterns; system: names only exactly). */
  proxyImpersonateUsers: string[];
  proxyImpersonateGroups: string[];
  /** host:port to serve /metrics on; not served without it. */
  metricsAddress?: string;
  /** CAs trusted for proxy/https/HOST:PORT targets besides the system roots. */
  proxyCaFile?: string;
  /** --proxy-stream-pool: idle proxy streams kept open ahead (feature proxy-pool); 0: none, each request announced. */
  proxyStreamPool: number;
}

export function defaultAgentOptions(): AgentOptions {
  return {
    parentUrl: '127.0.0.1:7100',
    clusterRegName: '',
    clusterType: 'EdgeCluster',
    clusterLabels: {},
    clusterSyncMode: 'Dual',
    clusterStatusUpdateFrequencyMs: 30_000,
    clusterLeaseDurationMs: 60_000,
    reconnectPeriodMs: defaultBackoffPolicy.baseMs,
    maxReconnectPeriodMs: defaultBackoffPolicy.capMs,
    stableConnectionMs: defaultBackoffPolicy.stableAfterMs,
    reconnectJitterMs: defaultBackoffPolicy.quickRetryMs ?? 0,
    reconnectSecondJitterMs: defaultBackoffPolicy.secondRetryMs ?? 0,
    cacheDir: '.hawser/agent',
    registerTimeoutMs: 30_000,
    // Heartbeats (every lease/3, at most the status period: 30 s) are the liveness probe and
    // keep NAT mappings open; pings are the fallback while no heartbeats flow (a registration
    // waiting for approval), so the idle link carries one probe, not two.
    keepaliveTimeMs: 60_000,
    keepaliveTimeoutMs: 10_000,
    enableCompression: true,
    featureGates: '',
    applyIntervalMs: 30_000,
    maxObjectBytes: defaultMaxObjectBytes,
    cacheSizeLimitBytes: 1024 * 1024 * 1024,
    cacheEnabled: true,
    useCacheWhenDisconnected: true,
    cacheMaxAgeMs: 24 * 3600_000,
    cacheCleanupIntervalMs: 60_000,
    // Any operator the hub vouches for, never a system: name: the cluster's RBAC decides the rest.
    proxyImpersonateUsers: ['*'],
    proxyImpersonateGroups: ['*'],
    proxyStreamPool: defaultProxyStreamPool,
  };
}

/** The impersonation policy the proxy back end applies. */
export function impersonationPolicyOf(o: AgentOptions): ImpersonationPolicy {
  return { users: o.proxyImpersonateUsers, groups: o.proxyImpersonateGroups };
}

export function resolveAgentOptions(partial: Partial<AgentOptions>): AgentOptions {
  const defaults = defaultAgentOptions();
  const optional = ['parentCaFile', 'clusterRegNamespace', 'bootstrapToken', 'kubeconfig', 'metricsAddress', 'proxyCaFile'];
  for (const key of Object.keys(partial)) {
    if (!(key in defaults) && !optional.includes(key)) {
      throw new HawserError(ErrorCode.InvalidOption, `unknown agent option "${key}"`);
    }
  }
  const o = { ...defaults, ...partial };
  const problems: string[] = [];
  const nameProblem = dns1123LabelProblem(o.clusterRegName, 60);
  if (nameProblem) problems.push(`cluster-reg-name "${o.clusterRegName}" ${nameProblem}`);
  problems.push(...labelProblems(o.clusterLabels, 'cluster-labels'));
  if (!syncModes.includes(o.clusterSyncMode)) problems.push(`cluster-sync-mode "${o.clusterSyncMode}" must be one of ${syncModes.join(', ')}`);
  if (!/^[^:]+:\d+$|^\[[^\]]+\]:\d+$/.test(o.parentUrl.replace(/^grpcs?:\/\//, ''))) problems.push(`parent-url "${o.parentUrl}" must be host:port`);
  if (o.reconnectPeriodMs <= 0) problems.push('reconnect-period must be positive');
  if (o.maxReconnectPeriodMs < o.reconnectPeriodMs) problems.push('max-reconnect-period must be at least reconnect-period');
  if (!(o.reconnectJitterMs >= 0)) problems.push(`reconnect-jitter ${o.reconnectJitterMs}ms must not be negative`);
  if (!(o.reconnectSecondJitterMs >= 0)) problems.push(`reconnect-second-jitter ${o.reconnectSecondJitterMs}ms must not be negative`);
  if (o.clusterLeaseDurationMs < 1_000) problems.push('cluster-lease-duration must be at least 1s');
  if (o.clusterStatusUpdateFrequencyMs < 100) problems.push('cluster-status-update-frequency must be at least 100ms');
  if (!(o.applyIntervalMs >= 100)) problems.push('apply-interval must be at least 100ms');
  if (!Number.isSafeInteger(o.maxObjectBytes) || o.maxObjectBytes < 1024) problems.push(`max-object-bytes ${o.maxObjectBytes} must be a whole number of at least 1024`);
  if (!Number.isSafeInteger(o.cacheSizeLimitBytes) || o.cacheSizeLimitBytes < 0) problems.push(`cache-size-limit ${o.cacheSizeLimitBytes} must be a whole number of bytes (0: no limit)`);
  if (!(o.cacheMaxAgeMs >= 0) || !Number.isFinite(o.cacheMaxAgeMs)) problems.push(`cache-max-age ${o.cacheMaxAgeMs}ms must not be negative (0: never stale)`);
  if (!(o.cacheCleanupIntervalMs >= 100) || !Number.isFinite(o.cacheCleanupIntervalMs)) problems.push(`cache-cleanup-interval ${o.cacheCleanupIntervalMs}ms must be at least 100ms`);
  if (typeof o.cacheEnabled !== 'boolean') problems.push(`enable-cache ${String(o.cacheEnabled)} must be true or false`);
  if (typeof o.useCacheWhenDisconnected !== 'boolean') problems.push(`use-cache-when-disconnected ${String(o.useCacheWhenDisconnected)} must be true or false`);
  try {
    parseFeatureGates(o.featureGates);
  } catch (err) {
    problems.push((err as Error).message);
  }
  for (const [list, flag] of [[o.proxyImpersonateUsers, userPatternsFlag], [o.proxyImpersonateGroups, groupPatternsFlag]] as const) {
    try {
      if (list.some((p) => p.includes(','))) throw new Error(`${flag}: a pattern must not contain a comma`);
      parseImpersonationPatterns(list.join(','), flag);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (o.metricsAddress !== undefined && !/^[^:]+:\d+$|^\[[^\]]+\]:\d+$/.test(o.metricsAddress)) problems.push(`metrics-address "${o.metricsAddress}" must be host:port`);
  if (problems.length > 0) throw new HawserError(ErrorCode.InvalidOption, problems.join('; '));
  return o;
}

export interface RunningAgent {
  core: AgentCore;
  cache: OfflineCache;
  /** The mode the agent runs: its registered mode with its feature gates applied. */
  syncMode: SyncMode;
  /** Sync receiver and apply loop (Pull and Dual; Push or Dual without AppPusher run as Pull); absent in Push. */
  sync?: SyncReceiver;
  apply?: SyncApplyLoop;
  /** Push: applies what the hub pushes, keeps no desired state. */
  push?: PushReceiver;
  metrics: AgentMetrics;
  /** host:port /metrics is served on, when asked for. */
  metricsAddress?: string;
  stop(): Promise<void>;
}

export async function startAgent(
  partial: Partial<AgentOptions>,
  deps: { logger: Logger; clock?: Clock; random?: () => number; reader?: ClusterReader; agentVersion?: string; applier?: (clusterId: string) => Applier },
): Promise<RunningAgent> {
  const o = resolveAgentOptions(partial);
  const reader = deps.reader ?? new KubeClusterReader(loadKubeConfig(o.kubeconfig));
  let caPem: string | undefined;
  if (o.parentCaFile) {
    try {
      caPem = await readFile(o.parentCaFile, 'utf8');
    } catch (err) {
      throw new HawserError(ErrorCode.InvalidOption, `cannot read parent CA file ${o.parentCaFile}: ${(err as Error).message}`);
    }
  }
  const transport = new GrpcClientTransport({
    target: o.parentUrl.replace(/^grpcs?:\/\//, ''),
    tls: caPem ? { caPem } : {},
    keepaliveTimeMs: o.keepaliveTimeMs,
    keepaliveTimeoutMs: o.keepaliveTimeoutMs,
  });
  let proxyCaPem: string | undefined;
  if (o.proxyCaFile) {
    try {
      proxyCaPem = await readFile(o.proxyCaFile, 'utf8');
    } catch (err) {
      throw new HawserError(ErrorCode.InvalidOption, `cannot read proxy CA file ${o.proxyCaFile}: ${(err as Error).message}`);
    }
  }
  // kubectl through the hub needs the cluster's kubeconfig; an agent run with only a status reader (a benchmark) has none.
  const proxyKube = deps.reader && !o.kubeconfig ? undefined : loadKubeConfig(o.kubeconfig);
  const metrics = new AgentMetrics();
  const { cache, quarantined } = await openAgentCache(o.cacheDir, deps.logger);
  if (quarantined) metrics.cacheQuarantines.inc({ what: 'database' });
  const now = () => (deps.clock ?? { now: Date.now }).now();
  // Damaged records found before the first hello, so that hello already asks for a snapshot.
  const checker = new SyncReceiver(cache, deps.logger, now);
  let salvagedOnRead = 0;
  checker.on('quarantined', (e) => {
    if (e.database) salvagedOnRead++;
  });
  const recordQuarantines = await checker.verify();
  if (recordQuarantines > 0) metrics.cacheQuarantines.inc({ what: 'record' }, recordQuarantines);
  if (salvagedOnRead > 0) metrics.cacheQuarantines.inc({ what: 'database' }, salvagedOnRead);
  const quarantines = (quarantined ? 1 : 0) + recordQuarantines + salvagedOnRead;
  const mode = effectiveSyncMode(o.clusterSyncMode, parseFeatureGates(o.featureGates));
  // Set once the receiver exists (after the identity is read); hellos come later still.
  const receiverRef: { current?: SyncReceiver } = {};
  const coreOptions: AgentCoreOptions = {
    clusterRegName: o.clusterRegName,
    clusterType: o.clusterType,
    clusterLabels: o.clusterLabels,
    // Registered as asked (Clusternet reports the gate apart, as status.appPusher); the agent runs effectiveSyncMode.
    clusterSyncMode: o.clusterSyncMode,
    clusterSyncModeInEffect: mode,
    clusterStatusUpdateFrequencyMs: o.clusterStatusUpdateFrequencyMs,
    clusterLeaseDurationMs: o.clusterLeaseDurationMs,
    backoff: { baseMs: o.reconnectPeriodMs, capMs: o.maxReconnectPeriodMs, stableAfterMs: o.stableConnectionMs, quickRetryMs: Math.min(o.reconnectJitterMs, o.maxReconnectPeriodMs),
      secondRetryMs: Math.min(o.reconnectSecondJitterMs, o.maxReconnectPeriodMs),
      maxUnackedWelcomes: defaultBackoffPolicy.maxUnackedWelcomes ?? 0,
    },
    registerTimeoutMs: o.registerTimeoutMs,
    missedHeartbeatLimit: 3,
    heartbeatAckTimeoutMs: o.keepaliveTimeoutMs,
    agentVersion: deps.agentVersion ?? '0.1.0',
    // Push applies each object as it arrives (no chunk reassembly, no compression context);
    // proxy streams need a kubeconfig to forward with.
    features: [
      Feature.Sync,
      Feature.LocalDigest,
      Feature.ReportDelta,
      ...(mode === 'Push' ? [] : [Feature.Chunks, ...(o.enableCompression ? [Feature.CompressionDeflate] : [])]),
      ...(proxyKube ? [Feature.ProxyStreams, Feature.ProxyPrelude, ...(o.proxyStreamPool > 0 ? [Feature.ProxyPool] : [])] : []),
    ],
    ...(o.bootstrapToken ? { bootstrapToken: o.bootstrapToken } : {}),
    ...(o.clusterRegNamespace ? { clusterRegNamespace: o.clusterRegNamespace } : {}),
  };
  const core = new AgentCore(coreOptions, {
    transport,
    reader,
    cache,
    identityStore: new IdentityStore(o.cacheDir),
    // Every dial trusts --parent-ca-file plus the bundle the hub pushed (stored beside identity.json).
    trust: { store: new TrustStore(o.cacheDir), apply: (caPems) => transport.setExtraTrustedCas(caPems) },
    cacheQuarantines: quarantines,
    logger: deps.logger,
    // Pull and Dual tell the hub what they hold (a digest), so a cache changed behind the agent's back is found.
    syncResume: async () => {
      const state = await readSyncState(cache, deps.logger);
      const receiver = receiverRef.current;
      if (!receiver) return state;
      // Every hello also names the large object held in part, so the hub resumes it there. A cache
      // that cannot be read for them must not stop the hello: no partial object, and a digest that
      // makes the hub send a snapshot.
      const desiredDigest = await receiver.digest().catch(() => 'unreadable');
      const fields = await receiver.helloFields().catch(() => ({}));
      return { ...state, desiredDigest, ...fields };
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.random ? { random: deps.random } : {}),
  });
  try {
    await core.init();
  } catch (err) {
    await cache.close();
    if (err instanceof HawserError) throw err;
    throw new HawserError(
      ErrorCode.InvalidOption,
      `cannot read the agent identity from ${o.cacheDir}: ${(err as Error).message}; move the directory aside to register as a new cluster`,
      { cause: err },
    );
  }
  // Fed Secrets are sealed in the cache with a key of the agent's own, 0600 beside identity.json.
  let sealKey: SealKey;
  try {
    sealKey = (await loadOrCreateSealKey(join(o.cacheDir, secretKeyFileName))).key;
  } catch (err) {
    await cache.close();
    throw new HawserError(ErrorCode.InvalidOption, `agent secret key ${join(o.cacheDir, secretKeyFileName)}: ${(err as Error).message}`, { cause: err });
  }
  const clusterId = core.clusterId!;
  const applier = deps.applier ? deps.applier(clusterId) : new ApplyEngine({ kubeConfig: loadKubeConfig(o.kubeconfig), clusterId, fieldManager: 'hawser-agent' });
  deps.logger.info({ syncMode: o.clusterSyncMode, runsAs: mode, appPusher: parseFeatureGates(o.featureGates).AppPusher }, `sync mode ${o.clusterSyncMode}, running as ${mode}`);
  if (proxyKube) {
    const proxy = new ProxyBackend({ kubeConfig: proxyKube, impersonation: impersonationPolicyOf(o), streamPool: o.proxyStreamPool, metrics, logger: deps.logger, ...(proxyCaPem ? { httpsTargetCaPem: proxyCaPem } : {}) });
    core.registerHandler(proxy.handlerFactory());
  }
  let metricsServer: Server | undefined;
  let metricsAddress: string | undefined;
  if (o.metricsAddress) {
    const i = o.metricsAddress.lastIndexOf(':');
    try {
      ({ server: metricsServer, address: metricsAddress } = await serveAgentMetrics(metrics, o.metricsAddress.slice(0, i).replace(/^\[|\]$/g, ''), Number(o.metricsAddress.slice(i + 1))));
    } catch (err) {
      await cache.close();
      throw new HawserError(ErrorCode.InvalidOption, `cannot serve metrics on ${o.metricsAddress}: ${(err as Error).message}`, { cause: err });
    }
  }
  const closeMetrics = async () => {
    if (!metricsServer) return;
    const closed = new Promise<void>((resolve) => metricsServer!.close(() => resolve()));
    metricsServer.closeAllConnections();
    await closed;
  };
  const sessionUp = () => core.session?.negotiated.features.has(Feature.Sync) === true;
  const monitorOptions = {
    cache,
    metrics,
    logger: deps.logger,
    limitBytes: o.cacheSizeLimitBytes,
    maxAgeMs: o.cacheMaxAgeMs,
    cleanupIntervalMs: o.cacheCleanupIntervalMs,
    connected: sessionUp,
    ...(deps.clock ? { clock: deps.clock } : {}),
  };
  if (mode === 'Push') {
    // The hub drives every apply; nothing of the desired set is kept here (a set cached by an earlier Pull or Dual run goes).
    await dropDesiredSet(cache, deps.logger);
    const push = new PushReceiver(cache, applier, deps.logger, now);
    core.registerHandler(push.handlerFactory());
    const monitor = new CacheMonitor(monitorOptions);
    monitor.start();
    void core.start();
    return {
      core,
      cache,
      syncMode: mode,
      push,
      metrics,
      ...(metricsAddress ? { metricsAddress } : {}),
      stop: async () => {
        await monitor.stop();
        await closeMetrics();
        await core.stop();
        if (applier instanceof ApplyEngine) applier.close();
        await cache.close();
      },
    };
  }
  if (!o.cacheEnabled) {
    // --enable-cache=false: nothing of the desired set outlives a run; the hub sends it all again.
    await dropDesiredSet(cache, deps.logger, '--enable-cache=false');
    await cache.batch([{ type: 'del', key: syncStateCacheKey }]);
  }
  const receiver = new SyncReceiver(cache, deps.logger, now, { maxObjectBytes: o.maxObjectBytes, maxCacheBytes: o.cacheSizeLimitBytes }, sealKey);
  receiverRef.current = receiver;
  // A salvaged database may lack records without a trace: no prune until the hub's snapshot.
  if (quarantined) await receiver.distrust(`the offline cache database was damaged and salvaged: ${quarantined.reason.slice(0, 300)}`, quarantined.path);
  const monitor = new CacheMonitor({ ...monitorOptions, receiver });
  receiver.on('quarantined', (e) => core.cacheQuarantined(e.database ? 1 : e.keys.length));
  const apply = new SyncApplyLoop({
    receiver,
    applier,
    logger: deps.logger,
    intervalMs: o.applyIntervalMs,
    applyWhileDisconnected: o.useCacheWhenDisconnected,
    metrics,
    cacheReport: () => monitor.report(),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  // Dual with AppPusher: the hub drives each apply too (the ack carries its result); Pull applies on its own only.
  if (mode === 'Dual') receiver.applyOnCommit = (signal) => apply.applyNow(signal);
  core.registerHandler(receiver.handlerFactory());
  core.registerHandler(apply.handlerFactory());
  // An owned object deleted by hand comes back at once, not at the next interval.
  const watch = applier instanceof ApplyEngine ? applier.watchOwned({ onDeleted: () => apply.trigger() }) : undefined;
  // From the cache first: with the hub down (and after a restart) the desired set is applied still.
  monitor.start();
  apply.start();
  void core.start();
  return {
    core,
    cache,
    syncMode: mode,
    sync: receiver,
    apply,
    metrics,
    ...(metricsAddress ? { metricsAddress } : {}),
    stop: async () => {
      watch?.close();
      await closeMetrics();
      await monitor.stop();
      await apply.stop();
      await core.stop();
      if (applier instanceof ApplyEngine) applier.close();
      await cache.close();
    },
  };
}

/** Push keeps no desired state: drops a set an earlier Pull or Dual run cached. */
async function dropDesiredSet(cache: OfflineCache, logger: Logger, why = 'Push mode'): Promise<void> {
  const keys = (await Promise.all(desiredSetPrefixes.map((p) => cache.keys({ gte: p, lt: `${p}\uffff` })))).flat();
  if (keys.length === 0) return;
  await cache.batch(keys.map((key) => ({ type: 'del' as const, key })));
  logger.info({ objects: keys.length }, `${why}: dropped the desired set an earlier run cached (the hub holds it)`);
}

/** The LevelDB database lives here, beside identity.json. */
export const cacheDbDirName = 'db';

/** The agent's key for Secrets in its cache (AES-256-GCM), in its cache dir. */
export const secretKeyFileName = 'secret-key';

/**
 * Opens the agent's cache directory: 0700, every file 0600 (a umask for
 * what LevelDB creates), the LevelDB database in <cache-dir>/db. A database
 * from before that layout (LevelDB files directly in the cache dir) moves
 * into db/ once. A damaged database is quarantined (renamed, kept) and a
 * fresh one opened: the identity is in its own file, and the rest of the
 * cache is rebuilt from the hub.
 */
export async function openAgentCache(cacheDir: string, logger: Logger): Promise<{ cache: OfflineCache; quarantines: number; quarantined?: CacheQuarantine }> {
  process.umask(0o077);
  await ensurePrivateDir(cacheDir);
  const dbDir = join(cacheDir, cacheDbDirName);
  const entries = await readdir(cacheDir);
  if (entries.includes('CURRENT') && !entries.includes(cacheDbDirName)) {
    await ensurePrivateDir(dbDir);
    for (const name of entries) {
      if (name.startsWith(identityFileName) || name.startsWith(trustBundleFileName) || name.startsWith(secretKeyFileName) || name.startsWith('.') || name.startsWith(`${cacheDbDirName}.`)) continue;
      if ((await stat(join(cacheDir, name))).isFile()) await rename(join(cacheDir, name), join(dbDir, name));
    }
    logger.info({ cacheDir }, 'moved the LevelDB cache into its own directory beside identity.json');
  }
  // Caches written before these modes were enforced: tighten what is there.
  for (const dir of [cacheDir, dbDir]) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const path = join(dir, name);
      const s = await stat(path);
      if (s.isFile() && (s.mode & 0o077) !== 0) await chmod(path, 0o600);
    }
  }
  const opened = await OfflineCache.openOrQuarantine({ dir: dbDir, salvage: true });
  if (opened.quarantined) {
    logger.error(
      { code: ErrorCode.CacheCorrupt, quarantinedTo: opened.quarantined.path, reason: opened.quarantined.reason, salvaged: opened.quarantined.salvaged },
      opened.quarantined.salvaged
        ? 'offline cache was damaged: moved aside, and what checks out of a repaired copy is reconciled without prune until the hub sends the desired state again'
        : 'offline cache was damaged: moved aside and started afresh (the identity is kept; the rest is rebuilt from the hub)',
    );
  }
  return { cache: opened.cache, quarantines: opened.quarantined ? 1 : 0, ...(opened.quarantined ? { quarantined: opened.quarantined } : {}) };
}
