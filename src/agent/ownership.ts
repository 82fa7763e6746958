import { dns1123LabelProblem, isUuid, quoteBounded } from '../api/core.js';

// What marks an object in an edge cluster as applied by one agent. Pure.
//
// The cluster id is in the KEY of the label, not its value:
//   label      managed-by.apps.hawser.io/<cluster-id>: "true"
//   annotation subscriptions.apps.hawser.io/<cluster-id>: "<ns>/<name>[,<ns>/<name>...]"
// and each agent applies with its own field manager, "<manager>/<cluster-id>".
// So two registrations that point at one cluster can both apply one object
// (say a shared Namespace): each owns its own label and annotation, neither
// overwrites the other's, and a prune by one only releases its fields while
// the other still claims the object. A hand-made object has no such label
// and is never listed for prune.

export const managedByLabelPrefix = 'managed-by.apps.hawser.io/';
export const subscriptionsAnnotationPrefix = 'subscriptions.apps.hawser.io/';

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export function managedByLabel(clusterId: string): string {
  return `${managedByLabelPrefix}${clusterId}`;
}

export function subscriptionsAnnotation(clusterId: string): string {
  return `${subscriptionsAnnotationPrefix}${clusterId}`;
}

/** The field manager an agent applies with: the caller's name plus the cluster id, so agents never share one. */
export function fieldManagerFor(base: string, clusterId: string): string {
  return `${base}/${clusterId}`;
}

/** A cluster id must be a lower-case UUID: it goes into label keys. */
export function clusterIdProblem(clusterId: string): string | undefined {
  return isUuid(clusterId) ? undefined : `cluster id ${quoteBounded(clusterId)} is not a lower-case UUID`;
}

/** "namespace/name" of a Subscription; a problem text when it is not one. */
export function subscriptionTagProblem(tag: string): string | undefined {
  const parts = tag.split('/');
  if (parts.length !== 2) return `subscription ${quoteBounded(tag)} is not namespace/name`;
  const [ns, name] = parts as [string, string];
  const nsProblem = dns1123LabelProblem(ns);
  if (nsProblem) return `subscription namespace ${quoteBounded(ns)} ${nsProblem}`;
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) return `subscription name ${quoteBounded(name)} is not a DNS subdomain`;
  return undefined;
}

/** Fields the server owns; an apply must not send them (managedFields must be empty, resourceVersion would be a precondition). */
const serverMetaFields = ['managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds'];

/**
 * The object as this agent applies it: server-owned fields and status
 * dropped, its ownership label and subscriptions annotation added.
 */
export function stampOwnership(object: KubeObject, clusterId: string, subscriptions: readonly string[]): KubeObject {
  const metadata: ObjectMeta = { ...object.metadata };
  for (const f of serverMetaFields) delete metadata[f];
  metadata.labels = { ...object.metadata.labels, [managedByLabel(clusterId)]: 'true' };
  metadata.annotations = { ...object.metadata.annotations, [subscriptionsAnnotation(clusterId)]: [...new Set(subscriptions)].sort().join(',') };
  const stamped: KubeObject = { ...object, metadata };
  delete stamped['status'];
  return stamped;
}

export function isOwnedBy(meta: ObjectMeta, clusterId: string): boolean {
  return meta.labels?.[managedByLabel(clusterId)] !== undefined;
}

/** Other cluster ids that claim the object. */
export function otherOwners(meta: ObjectMeta, clusterId: string): string[] {
  return Object.keys(meta.labels ?? {})
    .filter((k) => k.startsWith(managedByLabelPrefix))
    .map((k) => k.slice(managedByLabelPrefix.length))
    .filter((id) => id !== clusterId);
}

export function subscriptionsOf(meta: ObjectMeta, clusterId: string): string[] {
  const value = meta.annotations?.[subscriptionsAnnotation(clusterId)];
  return value ? value.split(',').filter(Boolean) : [];
}

/** Field managers named in a 409 apply conflict ("conflict with \"kubectl-edit\" using apps/v1"). */
export function conflictingManagers(causes: ReadonlyArray<{ type?: string; message?: string }>): string[] {
  const managers = new Set<string>();
  for (const c of causes) {
    const m = /conflict with "([^"]*)"/.exec(c.message ?? '');
    if (m?.[1] !== undefined) managers.add(m[1]);
  }
  return [...managers];
}

/** Whether a field manager is another hawser agent (same base name, another cluster id). */
export function isOtherAgentManager(manager: string, base: string, clusterId: string): boolean {
  return manager.startsWith(`${base}/`) && manager !== fieldManagerFor(base, clusterId);
}
