import { resolve } from 'node:path';
import { stringify } from 'yaml';
import { dns1123LabelProblem } from '../api/index.js';
import { writeFileAtomic } from '../cache/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';
import { type HubTarget, resolveHubTarget } from './config.js';
import { type CommandSpec, helpText, parseFlags, stringFlag, UsageError } from './flags.js';

// `hawser kubeconfig CLUSTER`: a kubeconfig for kubectl, unmodified, whose
// server is the hub's proxy for that cluster and whose credential is the
// operator's own hub token (from the same place every client command takes it).
// The token is a secret: the output is meant for a 0600 file, never a log.

export const kubeconfigSpec: CommandSpec = {
  usage: 'hawser kubeconfig CLUSTER [--user NAME] [--output FILE] [--hub URL] [--context NAME]',
  summary:
    'Print a kubeconfig for kubectl that reaches CLUSTER through the hub (<hub>/clusters/CLUSTER), with the hub\'s CA and your operator token. ' +
    'It holds your token: keep it private, e.g. `hawser kubeconfig edge-1 --output edge-1.kubeconfig` (written 0600), ' +
    'or `(umask 077; hawser kubeconfig edge-1 > edge-1.kubeconfig)`. Then: kubectl --kubeconfig edge-1.kubeconfig get ns',
  flags: {
    user: { type: 'string', help: "name of the kubeconfig's user entry", default: 'hawser' },
    output: { type: 'string', help: 'write the kubeconfig to this file (0600, atomically) instead of stdout' },
    hub: { type: 'string', help: 'hub API URL (or env HAWSER_HUB; default from the current context, else http://127.0.0.1:7101)' },
    'token-file': { type: 'string', help: 'file holding your operator token (or env HAWSER_TOKEN; default from the context)' },
    context: { type: 'string', help: 'context in the hawser config (HAWSER_CONFIG, default ~/.hawser/config) to take hub, CA and token from' },
    'ca-file': { type: 'string', help: "CA of an https hub (its <data-dir>/pki/ca-bundle.crt; default from the context)" },
  },
};

/** The kubeconfig itself: one cluster, one user, one context named after the cluster, current. */
export function renderKubeconfig(target: HubTarget & { token: string }, cluster: string, user: string): string {
  const server = `${target.server}/clusters/${encodeURIComponent(cluster)}`;
  const https = server.startsWith('https:');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: cluster,
        cluster: { server, ...(https && target.caPem ? { 'certificate-authority-data': Buffer.from(target.caPem).toString('base64') } : {}) },
      },
    ],
    users: [{ name: user, user: { token: target.token } }],
    contexts: [{ name: cluster, context: { cluster, user } }],
    'current-context': cluster,
  };
  return `# kubectl through the hawser hub to cluster ${cluster}. Holds an operator token: keep this file 0600.\n${stringify(config)}`;
}

export async function runKubeconfig(argv: string[]): Promise<number> {
  const p = parseFlags(kubeconfigSpec, argv);
  if (p.help) return void console.log(helpText(kubeconfigSpec)), 0;
  const [cluster, ...rest] = p.positionals;
  if (!cluster || rest.length > 0) throw new UsageError(`kubeconfig takes exactly one CLUSTER\n\n${helpText(kubeconfigSpec)}`);
  const problem = dns1123LabelProblem(cluster);
  if (problem) throw new UsageError(`cluster name "${cluster.slice(0, 64)}" ${problem}`);
  const user = stringFlag(p, 'user', 'hawser')!;
  // A kubeconfig user name is free text to kubectl; keep it one printable line of YAML.
  if (!/^[!-~][ -~]{0,252}$/.test(user)) throw new UsageError('--user must be 1 to 253 printable characters');
  const target = await resolveHubTarget({
    hub: stringFlag(p, 'hub'),
    tokenFile: stringFlag(p, 'token-file'),
    context: stringFlag(p, 'context'),
    caFile: stringFlag(p, 'ca-file'),
  });
  // kubectl (client-go) never sends a bearer token over plain HTTP: such a kubeconfig could not log in.
  if (!target.server.startsWith('https:')) {
    throw new HawserError(
      ErrorCode.InvalidOption,
      `the hub at ${target.server} serves plain HTTP, and kubectl sends its token only over HTTPS: run the hub with --api-tls (off loopback it always serves HTTPS) and use its https:// URL and CA`,
    );
  }
  if (!target.token) {
    throw new HawserError(
      ErrorCode.InvalidOption,
      'no operator token to put in the kubeconfig: pass --token-file, set HAWSER_TOKEN, or use a context in ~/.hawser/config (hawser demo writes one)',
    );
  }
  const text = renderKubeconfig({ ...target, token: target.token }, cluster, user);
  const output = stringFlag(p, 'output');
  if (output === undefined) {
    process.stdout.write(text);
    return 0;
  }
  await writeFileAtomic(resolve(output), text, { mode: 0o600 });
  console.error(`kubeconfig for cluster ${cluster} written to ${output} (0600); try: kubectl --kubeconfig ${output} get ns`);
  return 0;
}
