import type { ClusterRegistrationRequest, ManagedCluster } from '../api/index.js';
import { hubRequest, hubUrl } from './client.js';
import { type CommandSpec, helpText, parseFlags, stringFlag, UsageError } from './flags.js';
import { clustersTable, renderObject, renderObjects, renderTable } from './table.js';

const hubFlag = { type: 'string' as const, help: 'hub API URL (or env HAWSER_HUB)', default: 'http://127.0.0.1:7101' };

export const approveSpec: CommandSpec = {
  usage: 'hawser approve NAME [--hub URL]',
  summary: 'Approve a cluster registration request, by cluster name or request name.',
  flags: { hub: hubFlag },
};

export const denySpec: CommandSpec = {
  usage: 'hawser deny NAME [--hub URL]',
  summary: 'Deny a pending cluster registration request, by cluster name or request name. A waiting agent is told; the name comes free.',
  flags: { hub: hubFlag },
};

export const deleteSpec: CommandSpec = {
  usage: 'hawser delete cluster NAME [--hub URL]',
  summary:
    'Delete a cluster: revoke its credentials, remove its ManagedCluster, registration request and key binding, and close its session. ' +
    'The name comes free; the agent (or a new one whose cache was lost) registers again and waits for approval.',
  flags: { hub: hubFlag },
};

export const getSpec: CommandSpec = {
  usage: 'hawser get clusters|clusterregistrationrequests [NAME] [-o json|yaml] [--hub URL]',
  summary: 'List clusters (ManagedCluster) or registration requests.',
  flags: { hub: hubFlag, output: { type: 'string', short: 'o', help: 'json or yaml; default a table' } },
};

const resourceAliases: Record<string, 'clusters' | 'clusterregistrationrequests'> = {
  clusters: 'clusters',
  cluster: 'clusters',
  managedclusters: 'clusters',
  managedcluster: 'clusters',
  mcls: 'clusters',
  clusterregistrationrequests: 'clusterregistrationrequests',
  clusterregistrationrequest: 'clusterregistrationrequests',
  clsrr: 'clusterregistrationrequests',
};

export async function runApprove(argv: string[]): Promise<number> {
  const p = parseFlags(approveSpec, argv);
  if (p.help) return void console.log(helpText(approveSpec)), 0;
  const name = p.positionals[0];
  if (!name || p.positionals.length > 1) throw new UsageError(`approve takes exactly one NAME\n\n${helpText(approveSpec)}`);
  const request = await hubRequest<ClusterRegistrationRequest>(
    hubUrl(stringFlag(p, 'hub')),
    'POST',
    `/api/v1/clusterregistrationrequests/${encodeURIComponent(name)}/approve`,
  );
  console.log(`clusterregistrationrequest/${request.metadata.name} approved (cluster ${request.spec.clusterName}, namespace ${request.status.dedicatedNamespace})`);
  return 0;
}

export async function runDeny(argv: string[]): Promise<number> {
  const p = parseFlags(denySpec, argv);
  if (p.help) return void console.log(helpText(denySpec)), 0;
  const name = p.positionals[0];
  if (!name || p.positionals.length > 1) throw new UsageError(`deny takes exactly one NAME\n\n${helpText(denySpec)}`);
  const request = await hubRequest<ClusterRegistrationRequest>(
    hubUrl(stringFlag(p, 'hub')),
    'POST',
    `/api/v1/clusterregistrationrequests/${encodeURIComponent(name)}/deny`,
  );
  console.log(`clusterregistrationrequest/${request.metadata.name} denied (cluster ${request.spec.clusterName})`);
  return 0;
}

export async function runDelete(argv: string[]): Promise<number> {
  const p = parseFlags(deleteSpec, argv);
  if (p.help) return void console.log(helpText(deleteSpec)), 0;
  const [kindArg, name, ...rest] = p.positionals;
  if (!kindArg || resourceAliases[kindArg.toLowerCase()] !== 'clusters' || !name || rest.length > 0) {
    throw new UsageError(`delete takes: cluster NAME\n\n${helpText(deleteSpec)}`);
  }
  const result = await hubRequest<{ details: { cluster: string; clusterId: string; credentialsRevoked: number } }>(
    hubUrl(stringFlag(p, 'hub')),
    'DELETE',
    `/api/v1/clusters/${encodeURIComponent(name)}`,
  );
  const d = result.details;
  console.log(`cluster/${d.cluster} deleted (cluster id ${d.clusterId}, ${d.credentialsRevoked} credential(s) revoked)`);
  return 0;
}

export async function runGet(argv: string[]): Promise<number> {
  const p = parseFlags(getSpec, argv);
  if (p.help) return void console.log(helpText(getSpec)), 0;
  const [kindArg, name, ...rest] = p.positionals;
  const kind = kindArg ? resourceAliases[kindArg.toLowerCase()] : undefined;
  if (!kind || rest.length > 0) {
    throw new UsageError(`get needs a resource: clusters or clusterregistrationrequests${kindArg ? ` (got "${kindArg}")` : ''}\n\n${helpText(getSpec)}`);
  }
  const output = stringFlag(p, 'output');
  if (output !== undefined && output !== 'json' && output !== 'yaml') throw new UsageError(`-o must be json or yaml, got "${output}"`);
  const base = hubUrl(stringFlag(p, 'hub'));
  let items: unknown[];
  if (name) {
    if (kind !== 'clusters') throw new UsageError('get by NAME is supported for clusters');
    items = [await hubRequest<ManagedCluster>(base, 'GET', `/api/v1/clusters/${encodeURIComponent(name)}`)];
  } else {
    items = (await hubRequest<{ items: unknown[] }>(base, 'GET', `/api/v1/${kind}`)).items;
  }
  if (output) {
    console.log(name ? renderObject(items[0], output) : renderObjects(items, output));
    return 0;
  }
  if (kind === 'clusters') {
    console.log(items.length === 0 ? 'No clusters found.' : clustersTable(items as ManagedCluster[], Date.now()));
  } else {
    const rows = (items as ClusterRegistrationRequest[]).map((r) => [r.metadata.name, r.spec.clusterName, r.spec.clusterId, r.status.result ?? 'Pending']);
    console.log(rows.length === 0 ? 'No registration requests found.' : renderTable(['NAME', 'CLUSTER', 'CLUSTER ID', 'RESULT'], rows));
  }
  return 0;
}
