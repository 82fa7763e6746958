import type { ClusterRegistrationRequest, ManagedCluster } from '../api/index.js';
import type { PkiState } from '../hub/index.js';
import { resolveResourceName } from '../api/index.js';
import { hubRequest } from './client.js';
import { describeUsageError, runDescribeSubscription } from './describe.js';
import { applyManifests, deleteManifests, deleteResource, getFeeds, getResources, namespaceFlagValue } from './resource-commands.js';
import { type HubTarget, resolveHubTarget } from './config.js';
import { type CommandSpec, type FlagSpec, helpText, intFlag, type Parsed, parseFlags, stringFlag, UsageError } from './flags.js';
import { clustersTable, renderObject, renderObjects, renderTable } from './table.js';

/** Where the hub is and who is asking; see config.ts for the order they are looked up in. */
const targetFlags: Record<string, FlagSpec> = {
  hub: { type: 'string', help: 'hub API URL (or env HAWSER_HUB; default from the current context, else http://127.0.0.1:7101)' },
  'token-file': { type: 'string', help: 'file holding your operator token (or env HAWSER_TOKEN; default from the context)' },
  context: { type: 'string', help: 'context in the hawser config (HAWSER_CONFIG, default ~/.hawser/config)' },
  'ca-file': { type: 'string', help: "CA of an https hub (its <data-dir>/pki/ca-bundle.crt; default from the context)" },
};

function target(p: Parsed): Promise<HubTarget> {
  return resolveHubTarget({
    hub: stringFlag(p, 'hub'),
    tokenFile: stringFlag(p, 'token-file'),
    context: stringFlag(p, 'context'),
    caFile: stringFlag(p, 'ca-file'),
  });
}

export const approveSpec: CommandSpec = {
  usage: 'hawser approve NAME [--hub URL] [--context NAME]',
  summary: 'Approve a cluster registration request, by cluster name or request name.',
  flags: { ...targetFlags },
};

export const denySpec: CommandSpec = {
  usage: 'hawser deny REQUEST [--hub URL] [--context NAME]',
  summary: 'Deny a pending cluster registration request, by request name or cluster name. A waiting agent is told; the name comes free.',
  flags: { ...targetFlags },
};

const namespaceFlag: FlagSpec = { type: 'string', short: 'n', help: 'namespace (default "default"); a file\'s object that names another namespace is refused, as kubectl does' };
const fileFlag: FlagSpec = { type: 'string', short: 'f', multiple: true, help: 'a YAML/JSON file, a directory of them (.yaml, .yml, .json), or - for stdin; repeatable' };
const outputFlag: FlagSpec = { type: 'string', short: 'o', help: 'json or yaml; default a table' };

export const applySpec: CommandSpec = {
  usage: 'hawser apply -f FILE|DIR|- [-n NS] [-o json|yaml] [--hub URL] [--context NAME]',
  summary:
    'Create or replace objects on the hub by name (server-side): Subscriptions, Descriptions, Localizations, Globalizations, HelmCharts, ' +
    "and the native objects Subscriptions feed (kept on the hub as templates). Clusternet's apps.clusternet.io YAML applies as it is. " +
    'Every document is validated first; if any is refused, nothing is stored.',
  flags: { ...targetFlags, filename: fileFlag, namespace: namespaceFlag, output: outputFlag },
};

export const deleteSpec: CommandSpec = {
  usage: 'hawser delete -f FILE|DIR|- | hawser delete KIND NAME [-n NS] | hawser delete cluster NAME   [--hub URL] [--context NAME]',
  summary:
    'Delete the objects a file names, or one object by kind and name (subscription, description, localization, globalization, base, manifest). ' +
    '"delete cluster NAME" revokes a cluster\'s credentials, removes its ManagedCluster, registration request and key binding, and closes its session; ' +
    'the name comes free and the agent registers again and waits for approval.',
  flags: { ...targetFlags, filename: fileFlag, namespace: namespaceFlag },
};

export const getSpec: CommandSpec = {
  usage:
    'hawser get subscriptions|descriptions|localizations|globalizations|bases|manifests|feeds|clusters|clusterregistrationrequests|pki [NAME] [-n NS | -A] [-o json|yaml] [--hub URL] [--context NAME]',
  summary:
    "List or show Subscriptions (subs), Descriptions (desc), Localizations (loc), Globalizations (glob), Bases and Manifests, " +
    'the native objects Subscriptions feed (feeds: templates on the hub, every namespace unless -n), ' +
    "clusters (ManagedCluster), registration requests, or the hub's CAs and serving certificate (pki).",
  flags: {
    ...targetFlags,
    output: outputFlag,
    namespace: namespaceFlag,
    'all-namespaces': { type: 'boolean', short: 'A', help: 'list in every namespace' },
  },
};

export const rotateSpec: CommandSpec = {
  usage: 'hawser rotate ca [--finish] | hawser rotate serving-cert   [--hub URL] [--context NAME]',
  summary:
    'Rotate the hub\'s certificates with an overlap. "rotate ca" adds a new CA to the trust bundle, which every agent gets over its tunnel ' +
    '(offline agents when they reconnect); "rotate serving-cert" serves a certificate from the newest CA without a restart; ' +
    '"rotate ca --finish" retires the older CAs once the serving certificate no longer needs them.',
  flags: { ...targetFlags, finish: { type: 'boolean', help: 'with "ca": retire every CA but the newest' } },
};

const resourceAliases: Record<string, 'clusters' | 'clusterregistrationrequests' | 'pki'> = {
  clusters: 'clusters',
  cluster: 'clusters',
  managedclusters: 'clusters',
  managedcluster: 'clusters',
  mcls: 'clusters',
  clusterregistrationrequests: 'clusterregistrationrequests',
  clusterregistrationrequest: 'clusterregistrationrequests',
  clsrr: 'clusterregistrationrequests',
  pki: 'pki',
};

type PkiView = PkiState & { agents?: Array<{ cluster: string; bundleVersionSent: number; upToDate: boolean }> };

function pkiTable(state: PkiView): string {
  const cas = state.cas.map((c) => [c.current ? 'CA (current)' : 'CA', c.subject, c.fingerprint, c.notAfter]);
  const s = state.servingCertificate;
  const issuer = state.cas.find((c) => c.fingerprint === s.issuerFingerprint)?.subject ?? (state.managed ? 'unknown' : 'operator-supplied');
  return [
    renderTable(['KIND', 'SUBJECT', 'SHA256 FINGERPRINT', 'NOT AFTER'], [...cas, ['serving', s.subject, s.fingerprint, s.notAfter]]),
    '',
    `trust bundle version ${state.bundleVersion}; serving certificate issued by ${issuer}, renewed automatically after ${s.renewAt}`,
    ...(state.agents ? [agentsLine(state.agents)] : []),
  ].join('\n');
}

function agentsLine(agents: NonNullable<PkiView['agents']>): string {
  const waiting = agents.filter((a) => !a.upToDate).map((a) => a.cluster);
  const shown = waiting.slice(0, 10).join(', ') + (waiting.length > 10 ? `, and ${waiting.length - 10} more` : '');
  return `clusters sent this bundle: ${agents.length - waiting.length}/${agents.length}${waiting.length ? ` (waiting: ${shown})` : ''}`;
}

export async function runRotate(argv: string[]): Promise<number> {
  const p = parseFlags(rotateSpec, argv);
  if (p.help) return void console.log(helpText(rotateSpec)), 0;
  const [what, ...rest] = p.positionals;
  const finish = p.values.finish === true;
  if (finish && what !== 'ca') throw new UsageError(`--finish goes with "rotate ca" only\n\n${helpText(rotateSpec)}`);
  if ((what !== 'ca' && what !== 'serving-cert') || rest.length > 0) {
    throw new UsageError(`rotate takes: ca [--finish] or serving-cert${what ? ` (got "${p.positionals.join(' ')}")` : ''}\n\n${helpText(rotateSpec)}`);
  }
  const path = what === 'ca' ? `/api/v1/pki/ca/${finish ? 'finish' : 'rotate'}` : '/api/v1/pki/serving-cert/rotate';
  const state = await hubRequest<PkiState>(await target(p), 'POST', path);
  const done = what === 'serving-cert' ? 'serving certificate rotated' : finish ? 'CA rotation finished: older CAs retired' : 'new CA added to the trust bundle (agents get it now; run "hawser rotate serving-cert" next)';
  console.log(`${done}\n\n${pkiTable(state)}`);
  return 0;
}

export const syncSpec: CommandSpec = {
  usage: 'hawser sync confirm-prune CLUSTER --incarnation ID --revision N [--hub URL] [--context NAME]',
  summary:
    "Release a prune the cluster's agent holds (HAWSER_SYNC_PRUNE_HELD: after a snapshot from another hub incarnation, a hub behind it, " +
    'or one that would delete more than its bound). Name the hold exactly as "hawser get clusters" or "describe subscription" show it: ' +
    'a confirmation of another hold is refused (HAWSER_PRUNE_CONFIRM_STALE) and approves no later deletion. Needs the admin role; audited.',
  flags: {
    ...targetFlags,
    incarnation: { type: 'string', help: "the held snapshot's hub incarnation (status.sync.pruneHeld.incarnation)" },
    revision: { type: 'string', help: "the held snapshot's revision (status.sync.pruneHeld.revision)" },
  },
};

export async function runSync(argv: string[]): Promise<number> {
  const p = parseFlags(syncSpec, argv);
  if (p.help) return void console.log(helpText(syncSpec)), 0;
  const [verb, cluster, ...rest] = p.positionals;
  if (verb !== 'confirm-prune' || !cluster || rest.length > 0) throw new UsageError(`sync takes: confirm-prune CLUSTER\n\n${helpText(syncSpec)}`);
  const incarnation = stringFlag(p, 'incarnation');
  if (!incarnation) throw new UsageError(`--incarnation is required: the held snapshot's incarnation, as "hawser get clusters ${cluster} -o yaml" shows it`);
  if (stringFlag(p, 'revision') === undefined) throw new UsageError(`--revision is required: the held snapshot's revision, as "hawser get clusters ${cluster} -o yaml" shows it`);
  const revision = intFlag(p, 'revision', 0, 1);
  const reply = await hubRequest<{ details: { cluster: string; incarnation: string; revision: number; next: string } }>(
    await target(p),
    'POST',
    `/api/v1/clusters/${encodeURIComponent(cluster)}/sync/confirm-prune`,
    { contentType: 'application/json', text: JSON.stringify({ incarnation, revision }) },
  );
  const d = reply.details;
  console.log(`cluster/${d.cluster}: held prune of incarnation ${d.incarnation} revision ${d.revision} released; ${d.next}`);
  return 0;
}

export async function runApprove(argv: string[]): Promise<number> {
  const p = parseFlags(approveSpec, argv);
  if (p.help) return void console.log(helpText(approveSpec)), 0;
  const name = p.positionals[0];
  if (!name || p.positionals.length > 1) throw new UsageError(`approve takes exactly one NAME\n\n${helpText(approveSpec)}`);
  const request = await hubRequest<ClusterRegistrationRequest>(
    await target(p),
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
  if (!name || p.positionals.length > 1) throw new UsageError(`deny takes exactly one REQUEST\n\n${helpText(denySpec)}`);
  const request = await hubRequest<ClusterRegistrationRequest>(
    await target(p),
    'POST',
    `/api/v1/clusterregistrationrequests/${encodeURIComponent(name)}/deny`,
  );
  console.log(`clusterregistrationrequest/${request.metadata.name} denied (cluster ${request.spec.clusterName})`);
  return 0;
}

function outputOf(p: Parsed): 'json' | 'yaml' | undefined {
  const output = stringFlag(p, 'output');
  if (output !== undefined && output !== 'json' && output !== 'yaml') throw new UsageError(`-o must be json or yaml, got "${output}"`);
  return output;
}

function filesOf(p: Parsed): string[] {
  const v = p.values.filename;
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export async function runApply(argv: string[]): Promise<number> {
  const p = parseFlags(applySpec, argv);
  if (p.help) return void console.log(helpText(applySpec)), 0;
  const files = filesOf(p);
  if (files.length === 0 || p.positionals.length > 0) throw new UsageError(`apply takes -f FILE|DIR|- (and no other arguments)\n\n${helpText(applySpec)}`);
  const output = outputOf(p);
  return applyManifests(await target(p), files, namespaceFlagValue(stringFlag(p, 'namespace')), output);
}

export async function runDelete(argv: string[]): Promise<number> {
  const p = parseFlags(deleteSpec, argv);
  if (p.help) return void console.log(helpText(deleteSpec)), 0;
  const [kindArg, name, ...rest] = p.positionals;
  const files = filesOf(p);
  const namespace = namespaceFlagValue(stringFlag(p, 'namespace'));
  if (files.length > 0) {
    if (p.positionals.length > 0) throw new UsageError(`delete takes -f FILE or KIND NAME, not both\n\n${helpText(deleteSpec)}`);
    return deleteManifests(await target(p), files, namespace);
  }
  const resource = kindArg ? resolveResourceName(kindArg) : undefined;
  if (resource && name && rest.length === 0) return deleteResource(await target(p), resource, name, namespace);
  if (resourceAliases[kindArg?.toLowerCase() ?? ''] !== 'clusters' || !name || rest.length > 0) {
    throw new UsageError(`delete takes: -f FILE, KIND NAME, or cluster NAME${kindArg ? ` (got "${p.positionals.join(' ')}")` : ''}\n\n${helpText(deleteSpec)}`);
  }
  const result = await hubRequest<{ details: { cluster: string; clusterId: string; credentialsRevoked: number } }>(
    await target(p),
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
  const output = outputOf(p);
  if ((kindArg === 'feeds' || kindArg === 'feed') && !name) {
    const namespace = namespaceFlagValue(stringFlag(p, 'namespace'));
    return getFeeds(await target(p), { ...(namespace ? { namespace } : {}), ...(output ? { output } : {}) });
  }
  const resource = kindArg ? resolveResourceName(kindArg) : undefined;
  if (resource && rest.length === 0) {
    const namespace = namespaceFlagValue(stringFlag(p, 'namespace'));
    const allNamespaces = p.values['all-namespaces'] === true;
    if (allNamespaces && (namespace || name)) throw new UsageError('-A lists every namespace: it goes without -n and NAME');
    return getResources(await target(p), resource, { ...(name ? { name } : {}), ...(namespace ? { namespace } : {}), allNamespaces, ...(output ? { output } : {}) });
  }
  const kind = kindArg ? resourceAliases[kindArg.toLowerCase()] : undefined;
  if (!kind || rest.length > 0) {
    throw new UsageError(
      `get needs a resource: subscriptions, descriptions, localizations, globalizations, bases, manifests, clusters, clusterregistrationrequests or pki${kindArg ? ` (got "${kindArg}")` : ''}\n\n${helpText(getSpec)}`,
    );
  }
  const base = await target(p);
  if (kind === 'pki') {
    if (name) throw new UsageError('get pki takes no NAME');
    const state = await hubRequest<PkiView>(base, 'GET', '/api/v1/pki');
    console.log(output ? renderObject(state, output) : pkiTable(state));
    return 0;
  }
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

export const describeSpec: CommandSpec = {
  usage: 'hawser describe subscription NAME [-n NS] [--hub URL] [--context NAME]',
  summary: "Show a Subscription's placement, per-cluster replicas, conditions and recent errors (missing feeds, failed overrides, unsupported Helm).",
  flags: { ...targetFlags, namespace: namespaceFlag },
};

export async function runDescribe(argv: string[]): Promise<number> {
  const p = parseFlags(describeSpec, argv);
  if (p.help) return void console.log(helpText(describeSpec)), 0;
  const [kindArg, name, ...rest] = p.positionals;
  if (resolveResourceName(kindArg ?? '')?.kind !== 'Subscription') throw describeUsageError(kindArg);
  if (!name || rest.length > 0) throw new UsageError(`describe subscription needs exactly one NAME\n\n${helpText(describeSpec)}`);
  return runDescribeSubscription(await target(p), name, namespaceFlagValue(stringFlag(p, 'namespace')));
}
