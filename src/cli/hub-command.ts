import { defaultMaxObjectBytes } from '../api/index.js';
import { defaultHubApiAddress, defaultHubListenAddress, startHub } from '../hub/index.js';
import { parseBootstrapTokens } from '../tunnel/index.js';
import { type CommandSpec, durationFlag, helpText, intFlag, listFlag, parseFlags, stringFlag } from './flags.js';
import { stderrLogger } from './log.js';
import { onSignals, refuseSecretFlags } from './serve.js';

// `hawser hub`: the long-running hub. Stops cleanly on SIGINT/SIGTERM.

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
      help: 'ceiling of the adaptive limit on hellos being handled at once (it follows their latency); past the limit a hello waits for a slot up to 10s, else HAWSER_HUB_BUSY with a retry-after from the queue',
      default: '512',
    },
    'min-concurrent-handshakes': {
      type: 'string',
      help: 'floor of the adaptive handshake limit (equal to --max-concurrent-handshakes: a fixed limit)',
      default: '16',
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
    'sync-in-flight-bytes': {
      type: 'string',
      help: "sync bytes on the wire not yet acknowledged, per cluster: at least the link's bandwidth × round trip (48 KiB fits 32 KB/s at 600 ms); more is queue that heartbeats wait behind",
      default: '49152',
    },
  },
};

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
      minConcurrentHandshakes: intFlag(p, 'min-concurrent-handshakes', 16, 1),
      maxConcurrentHandshakes: intFlag(p, 'max-concurrent-handshakes', 512, 1),
      maxPendingRegistrationsPerToken: intFlag(p, 'max-pending-registrations-per-token', 100, 1),
      maxPendingRegistrations: intFlag(p, 'max-pending-registrations', 1000, 1),
      pendingRegistrationTtlMs: durationFlag(p, 'pending-registration-ttl', 24 * 3_600_000),
      credentialTtlMs: durationFlag(p, 'credential-ttl', 90 * 24 * 3_600_000),
      maxObjectBytes: intFlag(p, 'max-object-bytes', defaultMaxObjectBytes, 1024, 64 * 1024 * 1024),
      syncChunkBytes: intFlag(p, 'sync-chunk-bytes', 32 * 1024, 1024, 1024 * 1024),
      syncInFlightBytes: intFlag(p, 'sync-in-flight-bytes', 48 * 1024, 4096, 64 * 1024 * 1024),
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
