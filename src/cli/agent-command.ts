import { readFile } from 'node:fs/promises';
import { defaultMaxObjectBytes, parseLabelSelectorString, type SyncMode } from '../api/core.js';
import { parseImpersonationPatterns, startAgent } from '../agent/index.js';
import { ErrorCode, HawserError, parseBootstrapTokens } from '../tunnel/index.js';
import { boolFlag, type CommandSpec, durationFlag, helpText, intFlag, parseFlags, stringFlag, UsageError } from './flags.js';
import { agentCacheFlags, agentCacheOptions } from './agent-cache-flags.js';
import { stderrLogger } from './log.js';
import { onSignals, refuseSecretFlags } from './serve.js';

// `hawser agent`: the long-running agent. Loads no module of src/hub
// (test/integration/agent-modules.test.ts): an edge cluster's memory is scarce.

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
    'reconnect-second-jitter': { type: 'string', help: 'if that quick redial fails, redial once more within a random wait up to this before backing off; 0 disables', default: '5s' },
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
      reconnectSecondJitterMs: durationFlag(p, 'reconnect-second-jitter', 5_000),
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
