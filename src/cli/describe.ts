import { resolveResourceName, type Subscription } from '../api/index.js';
import type { deployer } from '../hub/index.js';
import { formatDuration } from '../tunnel/index.js';
import { hubRequest } from './client.js';
import type { HubTarget } from './config.js';
import { UsageError } from './flags.js';
import { renderTable } from './table.js';

// `hawser describe subscription NAME -n NS`: what a Clusternet user reads off
// `kubectl describe subscription` and its Description, in one place —
// placement, per-cluster replicas, conditions and what went wrong.

type DescribedStatus = Partial<deployer.DeployerStatus>;

interface FeedRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

const feedText = (f: FeedRef): string => `${f.apiVersion} ${f.kind} ${f.namespace ? `${f.namespace}/` : ''}${f.name}`;

function indent(text: string, by = '  '): string {
  return text
    .split('\n')
    .map((l) => (l ? by + l : l))
    .join('\n');
}

/** The text of `describe subscription`, from the object as the hub serves it. */
export function describeSubscription(sub: Subscription, nowMs: number): string {
  const status = (sub.status ?? {}) as DescribedStatus;
  const out: string[] = [];
  out.push(`Name:        ${sub.metadata.name}`, `Namespace:   ${sub.metadata.namespace ?? ''}`);
  const strategy = sub.spec.schedulingStrategy === 'Dividing' ? `Dividing/${sub.spec.dividingScheduling?.type ?? 'Static'}` : sub.spec.schedulingStrategy;
  out.push(`Strategy:    ${strategy}`);
  const missing = new Set((status.missingFeeds ?? []).map(feedText));
  out.push('Feeds:');
  for (const f of sub.spec.feeds) {
    const text = feedText(f as FeedRef);
    out.push(`  ${text}${missing.has(text) ? '   (missing: not on the hub yet; deploys when it is applied)' : ''}`);
  }

  out.push('Placement:');
  const rows = status.clusters ?? [];
  if (rows.length === 0) out.push('  <none>');
  else {
    // Clusternet's replicas: per feed, a list in bindingClusters' order.
    const binding = status.bindingClusters ?? [];
    const divided = Object.entries(status.replicas ?? {}).filter(([, list]) => list.length > 0);
    const header = ['CLUSTER', 'NAMESPACE', 'MANIFESTS', 'APPLIED', 'READY', ...divided.map(([feed]) => `REPLICAS ${feed.split('/').slice(-2).join('/')}`), 'NOTE'];
    const table = rows.map((r) => {
      // The deployer names a cluster by its scheduler key, "<dedicated namespace>/<name>".
      const key = r.cluster.includes('/') ? r.cluster : `${r.namespace}/${r.cluster}`;
      const i = binding.indexOf(key);
      const note = [
        r.held ? `held: ${r.held}` : '',
        r.message ?? '',
        r.waiting?.length ? `waiting (ApplyLater): ${r.waiting.join(', ')}` : '',
        r.health?.pruneHeld ? `prune held: ${r.health.pruneHeld}` : '',
      ]
        .filter(Boolean)
        .join('; ');
      const h = r.health;
      const applied = h ? `${h.applied}/${r.manifests}` : '<no report>';
      const ready = h?.ready ? `${h.ready.ready}/${h.ready.workloads}` : '-';
      return [key.slice(key.indexOf('/') + 1), r.namespace, String(r.manifests), applied, ready, ...divided.map(([, list]) => (i >= 0 ? String(list[i] ?? 0) : '-')), note || '-'];
    });
    out.push(indent(renderTable(header, table)));
  }

  out.push('Conditions:');
  const conditions = status.conditions ?? [];
  if (conditions.length === 0) out.push('  <none yet: the deployer has not reconciled it>');
  else {
    const table = conditions.map((c) => [
      c.type,
      c.status,
      c.reason ?? '',
      c.lastTransitionTime ? formatDuration(Math.max(0, nowMs - Date.parse(c.lastTransitionTime))) : '',
      c.message ?? '',
    ]);
    out.push(indent(renderTable(['TYPE', 'STATUS', 'REASON', 'AGE', 'MESSAGE'], table)));
  }

  const problems = [
    ...(status.clusters ?? []).flatMap((r) => (r.health?.errors ?? []).map((e) => `${e.code} (cluster ${r.cluster.slice(r.cluster.indexOf('/') + 1)}, ${e.object}): ${e.message}`)),
    ...(status.overrideFailures ?? []).map((f) => `${f.code} (cluster ${f.cluster}): ${f.message}`),
    ...(status.unsupported ?? []).map((u) => `${u.code}: ${u.message}`),
    ...[...missing].map((m) => `missing feed: ${m}`),
  ];
  out.push('Errors:');
  out.push(problems.length === 0 ? '  <none>' : problems.map((p) => `  ${p}`).join('\n'));
  return out.join('\n');
}

export async function runDescribeSubscription(target: HubTarget, name: string, namespace: string | undefined): Promise<number> {
  const resource = resolveResourceName('subscription')!;
  const ns = namespace ?? 'default';
  const sub = await hubRequest<Subscription>(target, 'GET', `/api/v1/resources/${resource.plural}/${encodeURIComponent(name)}?namespace=${encodeURIComponent(ns)}`);
  console.log(describeSubscription(sub, Date.now()));
  return 0;
}

export function describeUsageError(kind: string | undefined): UsageError {
  return new UsageError(`describe supports subscriptions: hawser describe subscription NAME -n NS${kind ? ` (got "${kind}")` : ''}`);
}
