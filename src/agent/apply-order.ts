// The order objects are applied in, and its reverse for deletes. Pure.
//
// Namespaces first (everything namespaced lands in one), then CRDs (their
// custom resources need them Established), then the rest in the order Helm
// installs kinds: policy and identity before what uses them, workloads after
// their config, admission webhooks last (a webhook whose backend is not up yet
// would refuse every later object).

export type ApplyPhase = 'namespace' | 'crd' | 'rest';

export interface GroupKind {
  /** "" for the core group. */
  group: string;
  kind: string;
}

const crdGroup = 'apiextensions.k8s.io';

export function phaseOf(gk: GroupKind): ApplyPhase {
  if (gk.group === '' && gk.kind === 'Namespace') return 'namespace';
  if (gk.group === crdGroup && gk.kind === 'CustomResourceDefinition') return 'crd';
  return 'rest';
}

/** Kinds ranked as Helm installs them; unlisted kinds go after these, before webhooks. */
const kindRank: readonly string[] = [
  'Namespace',
  'NetworkPolicy',
  'ResourceQuota',
  'LimitRange',
  'PodSecurityPolicy',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'SecretList',
  'ConfigMap',
  'StorageClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleList',
  'ClusterRoleBinding',
  'ClusterRoleBindingList',
  'Role',
  'RoleList',
  'RoleBinding',
  'RoleBindingList',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicationController',
  'ReplicaSet',
  'Deployment',
  'HorizontalPodAutoscaler',
  'StatefulSet',
  'Job',
  'CronJob',
  'IngressClass',
  'Ingress',
  'APIService',
];
const lastKinds: readonly string[] = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

function rank(gk: GroupKind): number {
  const phase = phaseOf(gk);
  if (phase === 'namespace') return 0;
  if (phase === 'crd') return 1;
  const known = kindRank.indexOf(gk.kind);
  if (known >= 0) return 10 + known;
  const last = lastKinds.indexOf(gk.kind);
  if (last >= 0) return 10_000 + last;
  return 1_000;
}

export interface Orderable extends GroupKind {
  namespace?: string | undefined;
  name: string;
}

/** Apply order: by rank, then group, kind, namespace and name, so the same set always applies the same way. */
export function compareApplyOrder(a: Orderable, b: Orderable): number {
  return (
    rank(a) - rank(b) ||
    a.group.localeCompare(b.group) ||
    a.kind.localeCompare(b.kind) ||
    (a.namespace ?? '').localeCompare(b.namespace ?? '') ||
    a.name.localeCompare(b.name)
  );
}

export function applyOrder<T extends Orderable>(items: readonly T[]): T[] {
  return [...items].sort(compareApplyOrder);
}

/** Deletes go in the reverse of the apply order: custom resources before their CRDs, everything before its namespace. */
export function deleteOrder<T extends Orderable>(items: readonly T[]): T[] {
  return applyOrder(items).reverse();
}
