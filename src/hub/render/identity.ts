// Which object a Feed names. Kubernetes identifies an object by group, kind,
// namespace and name (a version is only a view of it), and hawser's groups
// have Clusternet's as aliases, so `apps.clusternet.io/v1alpha1 Description`
// and `apps.hawser.io/v1alpha1 Description` name the same thing.

import type { Feed, KubeObject } from './types.js';

/** Clusternet's API groups and the hawser groups they alias. */
const groupAliases: Readonly<Record<string, string>> = {
  'apps.clusternet.io': 'apps.hawser.io',
  'clusters.clusternet.io': 'clusters.hawser.io',
};
const appsGroup = 'apps.hawser.io';

export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  return groupAliases[group] ?? group;
}

/** Group, kind, namespace and name: equal for two references to one object. */
export function identityOf(ref: Feed): string {
  return `${groupOf(ref.apiVersion)}|${ref.kind}|${ref.namespace ?? ''}|${ref.name}`;
}

export function feedOf(object: KubeObject): Feed {
  const { namespace, name } = object.metadata;
  return namespace ? { apiVersion: object.apiVersion, kind: object.kind, namespace, name } : { apiVersion: object.apiVersion, kind: object.kind, name };
}

/** Clusternet's feed key (utils.GetFeedKey): apiVersion/kind[/namespace]/name. The scheduler's replicas are keyed so. */
export function feedKey(ref: Feed): string {
  return ref.namespace ? `${ref.apiVersion}/${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.apiVersion}/${ref.kind}/${ref.name}`;
}

export function isAppsKind(ref: Pick<Feed, 'apiVersion' | 'kind'>, kind: string): boolean {
  return ref.kind === kind && groupOf(ref.apiVersion) === appsGroup;
}

/** How a feed's text reads in messages: `Kind namespace/name (apiVersion)`. */
export function describeFeed(ref: Feed): string {
  return `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name} (${ref.apiVersion})`;
}
