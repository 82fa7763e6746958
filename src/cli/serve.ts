import { readFile } from 'node:fs/promises';
import { defaultMaxObjectBytes, parseLabelSelectorString, type SyncMode } from '../api/index.js';
import { parseImpersonationPatterns, startAgent } from '../agent/index.js';
import { defaultHubApiAddress, defaultHubListenAddress, parseBootstrapTokens, startHub } from '../hub/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import { boolFlag, type CommandSpec, durationFlag, helpText, intFlag, listFlag, parseFlags, stringFlag, UsageError } from './flags.js';
import { agentCacheFlags, agentCacheOptions } from './agent-cache-flags.js';
import { stderrLogger } from './log.js';

// The long-running commands: hub and agent. Both stop cleanly on SIGINT/SIGTERM.

export const hubSpec: CommandSpec = {
  usage: 'hawser hub [flags]',
  summary: 'Run the hub: agents dial its tunnel; operators use its HTTP API.',
  flags: {
    'data-dir': { type: 'string', help: 'directory for the store, PKI and bootstrap token', default: '.hawser/hub' },
    listen: { type: 'string', help: 'tunnel address agents dial (host:port)', default: defaultHubListenAddress },
    'api-address': { type: 'string', help: 'HTTP API and /metrics address (host:port)', default: defaultHubApiAddress },
    'bootstrap-token-file': {
      type: 'string',
      help: 'file of accepted bootstrap tokens, one a line (or env HAWSER_BOOTSTRAP_TOKEN); default: generated into <data-dir>/bootstrap-token',
    },
    'operator-tokens-file': {
      type: 'string',
      help: "operators' API tokens (YAML: operators: [{name, role: admin|viewer, token}]); default: <data-dir>/operator-tokens, generated with one admin",
    },
    'metrics-anonymous': { type: 'boolean', help: 'serve /metrics without a token (default: needs a viewer token)' },
    'api-tls': { type: 'boolean', help: 'serve the API over TLS on loopback too (always off loopback); kubectl through the hub sends its token only over TLS' },
    'auto-approve': { type: 'boolean', help: 'approve cluster registration requests at once' },
    'cluster-lease-duration': { type: 'string', help: 'lease for agents that do not ask for one', default: '60s' },
    'tls-cert-file': { type: 'string', help: 'serving certificate (PEM); default: generated from the data dir CA' },
    'tls-key-file': { type: 'string', help: 'key of --tls-cert-file' },
    'tls-san': { type: 'string', multiple: true, help: 'extra DNS name or IP for the generated certificate (repeatable)' },
    'max-frame-bytes': { type: 'string', help: 'largest control frame accepted', default: '4194304' },
    'keepalive-time': { type: 'string', help: "HTTP/2 ping period towards agents: reaps dead connections (a cluster's lease already says it is gone)", default: '2m' },
    'tls-handshake-timeout': { type: 'string', help: 'drop a connection whose TLS handshake takes longer', default: '10s' },
    'max-concurrent-streams': { type: 'string', help: 'HTTP/2 streams one agent connection may open at once', default: '100' },
    'max-unwelcomed-streams': { type: 'string', help: 'streams still registering (not yet welcomed) at most, per hub', default: '1024' },
    'max-concurrent-handshakes': {
      type: 'string',
      help: 'hellos being handled (not yet welcomed or pending) at once; past them HAWSER_HUB_BUSY with a 1-5s retry-after',
      default: '64',
    },
    'max-pending-registrations-per-token': { type: 'string', help: 'undecided registration requests one bootstrap token may hold', default: '100' },
    'max-pending-registrations': { type: 'string', help: 'undecided registration requests in total', default: '1000' },
    'pending-registration-ttl': { type: 'string', help: 'drop an undecided registration request after this long (its name comes free)', default: '24h' },
    'credential-ttl': { type: 'string', help: 'lifetime of a cluster credential; agents renew it in its last third', default: '2160h' },
    'max-object-bytes': { type: 'string', help: 'largest object an apply may store and sync may send, as JSON (etcd keeps 1.5 MiB)', default: '1572864' },
    'sync-chunk-bytes': {
      type: 'string',
      help: 'sync sends larger objects in chunks of this size, each acknowledged, resuming after a cut at the next chunk (smaller for weak links)',
      default: '32768',
    },
  },
};

export const agentSpec: CommandSpec = {
  usage: 'hawser agent --cluster-reg-name NAME [flags]',
  summary: 'Run an agent: dial the hub, register, heartbeat, and keep reconnecting.',
  flags: {
    'parent-url': { type: 'string', help: 'hub tunnel address (host:port)', default: '127.0.0.1:7100' },
    'parent-ca-file': { type: 'string', help: "CA of the hub's certificate (the hub's <data-dir>/pki/ca-bundle.crt); the bundle the hub pushes is trusted as well" },
    'bootstrap-token-file': { type: 'string', help: 'file holding the bootstrap token (or env PARENT_CLUSTER_TOKEN)' },
    'cluster-reg-name': { type: 'string', help: 'cluster name to register as' },
    'cluster-reg-namespace': { type: 'string', help: 'namespace for the registration request' },
    'cluster-type': { type: 'string', help: 'cluster type', default: 'EdgeCluster' },
    'cluster-labels': { type: 'string', help: 'labels, key=value,key=value' },
    'cluster-sync-mode': { type: 'string', help: 'Push, Pull or Dual', default: 'Dual' },
    'cluster-status-update-frequency': { type: 'string', help: 'how often cluster status is reported', default: '30s' },
    'cluster-lease-duration': { type: 'string', help: 'lease the hub grants between heartbeats', default: '60s' },
    'reconnect-period': { type: 'string', help: 'base reconnect backoff', default: '10s' },
    'max-reconnect-period': { type: 'string', help: 'reconnect backoff cap', default: '5m' },
    'stable-connection': { type: 'string', help: 'connection lifetime that resets the backoff', default: '60s' },
    'reconnect-jitter': {
      type: 'string',
      help: 'after a working connection (welcomed, a heartbeat acked) drops, redial once within a random wait up to this; 0 disables',
      default: '1.5s',
    },
    'register-timeout': { type: 'string', help: 'give up a dial the hub does not answer within', default: '30s' },
    'keepalive-time': { type: 'string', help: 'HTTP/2 ping period, the fallback probe when no heartbeats flow (heartbeats keep NAT mappings open)', default: '60s' },
    'keepalive-timeout': { type: 'string', help: 'unanswered ping, or heartbeat without ack, after which the hub is gone', default: '10s' },
    kubeconfig: { type: 'string', help: 'kubeconfig of the local cluster; default in-cluster or ~/.kube/config' },
    'feature-gates': {
      type: 'string',
      help: "as clusternet-agent: AppPusher=true|false (default false). Without AppPusher a cluster in Push or Dual mode runs as Pull: it applies the hub's desired state itself, from its cache",
    },
    'enable-compression': {
      type: 'string',
      help: 'compress sync frames (one DEFLATE context per connection, with a dictionary of Kubernetes manifests) when the hub offers it: true or false',
      default: 'true',
    },
    'apply-interval': { type: 'string', help: 'how often the agent reconciles its cluster with the desired state it holds (drift comes back)', default: '30s' },
    'max-object-bytes': {
      type: 'string',
      help: 'largest object the agent takes from sync, as JSON; a larger one is an error on its subscription (HAWSER_SYNC_OBJECT_TOO_LARGE)',
      default: '1572864',
    },
    ...agentCacheFlags,
    'proxy-impersonate-users': {
      type: 'string',
      help: "users kubectl requests through the hub may run as here (the hub operator's name), comma-separated names and * patterns; empty: none. A system: user passes only when listed exactly",
      default: '*',
    },
    'proxy-impersonate-groups': {
      type: 'string',
      help: "groups those requests may carry (the operator's groups), as --proxy-impersonate-users; system:masters and other system: groups only when listed exactly",
      default: '*',
    },
    'metrics-address': { type: 'string', help: 'serve the agent\'s /metrics on host:port (e.g. 127.0.0.1:7102); default: not served' },
    'proxy-ca-file': { type: 'string', help: 'CAs (PEM) trusted for proxy/https/HOST:PORT targets in the edge network, besides the system roots' },
  },
};

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`stop after ${signal} failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Secrets never go on a command line (every local user sees it in ps). */
function refuseSecretFlags(argv: string[], instead: string): void {
  for (const arg of argv) {
    if (arg === '--') return;
    if (arg === '--bootstrap-token' || arg.startsWith('--bootstrap-token=')) {
      throw new UsageError(`--bootstrap-token is not accepted: a token on the command line is visible to every local user in ps; use ${instead}`);
    }
  }
}

export async function runHub(argv: string[]): Promise<number> {
  refuseSecretFlags(argv, '--bootstrap-token-file or the environment variable HAWSER_BOOTSTRAP_TOKEN');
  const p = parseFlags(hubSpec, argv);
  if (p.help) return void console.log(helpText(hubSpec)), 0;
  const logger = stderrLogger('hawser-hub');
  const certFile = stringFlag(p, 'tls-cert-file');
  const keyFile = stringFlag(p, 'tls-key-file');
  const tokenFile = stringFlag(p, 'bootstrap-token-file');
  const operatorTokensFile = stringFlag(p, 'operator-tokens-file');
  const envToken = process.env.HAWSER_BOOTSTRAP_TOKEN;
  const hub = await startHub(
    {
      dataDir: stringFlag(p, 'data-dir', '.hawser/hub')!,
      listenAddress: stringFlag(p, 'listen', defaultHubListenAddress)!,
      apiAddress: stringFlag(p, 'api-address', defaultHubApiAddress)!,
      // Set but empty is refused like an empty file, never taken as "no token".
      bootstrapTokens: envToken === undefined ? [] : parseBootstrapTokens(envToken, 'the environment variable HAWSER_BOOTSTRAP_TOKEN'),
      autoApprove: p.values['auto-approve'] === true,
      metricsAnonymous: p.values['metrics-anonymous'] === true,
      apiTls: p.values['api-tls'] === true,
      clusterLeaseDurationMs: durationFlag(p, 'cluster-lease-duration', 60_000),
      tlsSans: listFlag(p, 'tls-san'),
      maxFrameBytes: intFlag(p, 'max-frame-bytes', 4 * 1024 * 1024, 1024),
      keepaliveTimeMs: durationFlag(p, 'keepalive-time', 120_000),
      tlsHandshakeTimeoutMs: durationFlag(p, 'tls-handshake-timeout', 10_000),
      maxConcurrentStreams: intFlag(p, 'max-concurrent-streams', 100, 1),
      maxUnwelcomedStreams: intFlag(p, 'max-unwelcomed-streams', 1024, 1),
      maxConcurrentHandshakes: intFlag(p, 'max-concurrent-handshakes', 64, 1),
      maxPendingRegistrationsPerToken: intFlag(p, 'max-pending-registrations-per-token', 100, 1),
      maxPendingRegistrations: intFlag(p, 'max-pending-registrations', 1000, 1),
      pendingRegistrationTtlMs: durationFlag(p, 'pending-registration-ttl', 24 * 3_600_000),
      credentialTtlMs: durationFlag(p, 'credential-ttl', 90 * 24 * 3_600_000),
      maxObjectBytes: intFlag(p, 'max-object-bytes', defaultMaxObjectBytes, 1024, 64 * 1024 * 1024),
      syncChunkBytes: intFlag(p, 'sync-chunk-bytes', 32 * 1024, 1024, 1024 * 1024),
      ...(certFile ? { tlsCertFile: certFile } : {}),
      ...(keyFile ? { tlsKeyFile: keyFile } : {}),
      ...(tokenFile ? { bootstrapTokenFile: tokenFile } : {}),
      ...(operatorTokensFile ? { operatorTokensFile } : {}),
    },
    { logger },
  );
  logger.info(
    {
      tunnel: hub.tunnelAddress,
      api: hub.apiUrl,
      caFile: hub.caFile,
      operatorTokensFile: hub.operatorTokensFile,
      autoApprove: p.values['auto-approve'] === true,
    },
    'hub ready',
  );
  onSignals(async () => {
    logger.info('hub stopping');
    await hub.stop();
  });
  return new Promise<number>(() => {});
}

async function agentBootstrapToken(file: string | undefined): Promise<string | undefined> {
  if (!file) return process.env.PARENT_CLUSTER_TOKEN || undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new HawserError(ErrorCode.InvalidOption, `cannot read --bootstrap-token-file ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const tokens = parseBootstrapTokens(text, file);
  if (tokens.length > 1) throw new HawserError(ErrorCode.InvalidBootstrapToken, `${file} holds ${tokens.length} bootstrap tokens; an agent uses one`);
  return tokens[0];
}

export async function runAgent(argv: string[]): Promise<number> {
  refuseSecretFlags(argv, '--bootstrap-token-file or the environment variable PARENT_CLUSTER_TOKEN');
  const p = parseFlags(agentSpec, argv);
  if (p.help) return void console.log(helpText(agentSpec)), 0;
  const name = stringFlag(p, 'cluster-reg-name');
  if (!name) throw new UsageError(`--cluster-reg-name is required\n\n${helpText(agentSpec)}`);
  const logger = stderrLogger('hawser-agent').child({ cluster: name });
  let labels: Record<string, string> = {};
  try {
    labels = parseLabelSelectorString(stringFlag(p, 'cluster-labels', '')!, '--cluster-labels');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const token = await agentBootstrapToken(stringFlag(p, 'bootstrap-token-file'));
  const ns = stringFlag(p, 'cluster-reg-namespace');
  const caFile = stringFlag(p, 'parent-ca-file');
  const kubeconfig = stringFlag(p, 'kubeconfig');
  const metricsAddress = stringFlag(p, 'metrics-address');
  const proxyCaFile = stringFlag(p, 'proxy-ca-file');
  const agent = await startAgent(
    {
      parentUrl: stringFlag(p, 'parent-url', '127.0.0.1:7100')!,
      clusterRegName: name,
      clusterType: stringFlag(p, 'cluster-type', 'EdgeCluster')!,
      clusterLabels: labels,
      clusterSyncMode: stringFlag(p, 'cluster-sync-mode', 'Dual') as SyncMode,
      clusterStatusUpdateFrequencyMs: durationFlag(p, 'cluster-status-update-frequency', 30_000),
      clusterLeaseDurationMs: durationFlag(p, 'cluster-lease-duration', 60_000),
      reconnectPeriodMs: durationFlag(p, 'reconnect-period', 10_000),
      maxReconnectPeriodMs: durationFlag(p, 'max-reconnect-period', 300_000),
      stableConnectionMs: durationFlag(p, 'stable-connection', 60_000),
      reconnectJitterMs: durationFlag(p, 'reconnect-jitter', 1_500),
      registerTimeoutMs: durationFlag(p, 'register-timeout', 30_000),
      keepaliveTimeMs: durationFlag(p, 'keepalive-time', 60_000),
      keepaliveTimeoutMs: durationFlag(p, 'keepalive-timeout', 10_000),
      enableCompression: boolFlag(p, 'enable-compression', true),
      featureGates: stringFlag(p, 'feature-gates', '')!,
      applyIntervalMs: durationFlag(p, 'apply-interval', 30_000),
      maxObjectBytes: intFlag(p, 'max-object-bytes', defaultMaxObjectBytes, 1024, 64 * 1024 * 1024),
      ...agentCacheOptions(p),
      proxyImpersonateUsers: parseImpersonationPatterns(stringFlag(p, 'proxy-impersonate-users', '*')!, '--proxy-impersonate-users'),
      proxyImpersonateGroups: parseImpersonationPatterns(stringFlag(p, 'proxy-impersonate-groups', '*')!, '--proxy-impersonate-groups'),
      ...(token ? { bootstrapToken: token } : {}),
      ...(ns ? { clusterRegNamespace: ns } : {}),
      ...(caFile ? { parentCaFile: caFile } : {}),
      ...(kubeconfig ? { kubeconfig } : {}),
      ...(metricsAddress ? { metricsAddress } : {}),
      ...(proxyCaFile ? { proxyCaFile } : {}),
    },
    { logger },
  );
  logger.info({ clusterId: agent.core.clusterId, ...(agent.metricsAddress ? { metricsAddress: agent.metricsAddress } : {}) }, 'agent started');
  onSignals(async () => {
    logger.info('agent stopping');
    await agent.stop();
  });
  return new Promise<number>(() => {});
}
