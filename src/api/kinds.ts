import { quoteBounded } from './quote.js';

// The groups whose kinds the hub knows: what a Kubernetes v1.33 kube-apiserver
// serves (k8s.io/api v0.33 register.go, less the versions the server no longer
// serves), Clusternet's groups, and hawser's own. A feed or an applied object in
// one of these groups must name a kind its group/version has: "apps/v1 has no
// kind Service" catches a typo before it reaches any cluster. Kinds of other
// groups (a CRD's) are accepted: the hub cannot know them.

/** hawser's own groups; Clusternet's are aliases of them. */
export const appsGroup = 'apps.hawser.io';
export const appsApiVersion = `${appsGroup}/v1alpha1`;
export const clusternetAppsApiVersion = 'apps.clusternet.io/v1alpha1';

/** Clusternet's apiVersion -> hawser's: the same kinds under another name. */
export const apiVersionAliases: Readonly<Record<string, string>> = {
  [clusternetAppsApiVersion]: appsApiVersion,
  'clusters.clusternet.io/v1beta1': 'clusters.hawser.io/v1beta1',
};

/** hawser's apiVersion for a Clusternet alias; any other apiVersion as it is. */
export function canonicalApiVersion(apiVersion: string): string {
  return apiVersionAliases[apiVersion] ?? apiVersion;
}

export interface KindInfo {
  namespaced: boolean;
}

type KindTable = Record<string, KindInfo>;

/** Kinds from space-separated lists: those in `namespaced`, then cluster-scoped ones. */
function kinds(namespaced: string, clusterScoped = ''): KindTable {
  const table: KindTable = {};
  for (const k of namespaced.split(' ').filter(Boolean)) table[k] = { namespaced: true };
  for (const k of clusterScoped.split(' ').filter(Boolean)) table[k] = { namespaced: false };
  return table;
}

const clusternetApps = kinds('Subscription Description Localization Base Manifest HelmChart HelmRelease FeedInventory', 'Globalization');
// Clusternet keeps ManagedClusters in each cluster's dedicated namespace; hawser keys them by name.
const clusternetClusters = kinds('', 'ManagedCluster ClusterRegistrationRequest');

/**
 * group/version -> kinds. Subresource and option kinds (Scale, Eviction,
 * Binding, PodExecOptions, …) are left out: they are not objects one applies.
 */
const knownKinds: Readonly<Record<string, KindTable>> = {
  v1: kinds(
    'Pod PodTemplate ReplicationController Service Endpoints Event LimitRange ResourceQuota Secret ServiceAccount PersistentVolumeClaim ConfigMap',
    'Namespace Node PersistentVolume ComponentStatus',
  ),
  'admissionregistration.k8s.io/v1': kinds(
    '',
    'ValidatingWebhookConfiguration MutatingWebhookConfiguration ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding',
  ),
  'admissionregistration.k8s.io/v1beta1': kinds('', 'ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding'),
  'admissionregistration.k8s.io/v1alpha1': kinds(
    '',
    'ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding MutatingAdmissionPolicy MutatingAdmissionPolicyBinding',
  ),
  'apiextensions.k8s.io/v1': kinds('', 'CustomResourceDefinition'),
  'apiregistration.k8s.io/v1': kinds('', 'APIService'),
  'apps/v1': kinds('Deployment StatefulSet DaemonSet ReplicaSet ControllerRevision'),
  'authentication.k8s.io/v1': kinds('', 'TokenReview SelfSubjectReview'),
  'authentication.k8s.io/v1beta1': kinds('', 'SelfSubjectReview'),
  'authorization.k8s.io/v1': kinds('LocalSubjectAccessReview', 'SelfSubjectRulesReview SelfSubjectAccessReview SubjectAccessReview'),
  'autoscaling/v1': kinds('HorizontalPodAutoscaler'),
  'autoscaling/v2': kinds('HorizontalPodAutoscaler'),
  'batch/v1': kinds('Job CronJob'),
  'certificates.k8s.io/v1': kinds('', 'CertificateSigningRequest'),
  'certificates.k8s.io/v1beta1': kinds('', 'ClusterTrustBundle'),
  'certificates.k8s.io/v1alpha1': kinds('', 'ClusterTrustBundle'),
  'coordination.k8s.io/v1': kinds('Lease'),
  'coordination.k8s.io/v1beta1': kinds('LeaseCandidate'),
  'coordination.k8s.io/v1alpha2': kinds('LeaseCandidate'),
  'discovery.k8s.io/v1': kinds('EndpointSlice'),
  'events.k8s.io/v1': kinds('Event'),
  'flowcontrol.apiserver.k8s.io/v1': kinds('', 'FlowSchema PriorityLevelConfiguration'),
  'internal.apiserver.k8s.io/v1alpha1': kinds('', 'StorageVersion'),
  'networking.k8s.io/v1': kinds('Ingress NetworkPolicy', 'IngressClass IPAddress ServiceCIDR'),
  'networking.k8s.io/v1beta1': kinds('', 'IPAddress ServiceCIDR'),
  'node.k8s.io/v1': kinds('', 'RuntimeClass'),
  'policy/v1': kinds('PodDisruptionBudget'),
  'rbac.authorization.k8s.io/v1': kinds('Role RoleBinding', 'ClusterRole ClusterRoleBinding'),
  'resource.k8s.io/v1beta2': kinds('ResourceClaim ResourceClaimTemplate', 'DeviceClass ResourceSlice'),
  'resource.k8s.io/v1beta1': kinds('ResourceClaim ResourceClaimTemplate', 'DeviceClass ResourceSlice'),
  'resource.k8s.io/v1alpha3': kinds('ResourceClaim ResourceClaimTemplate', 'DeviceClass ResourceSlice DeviceTaintRule'),
  'scheduling.k8s.io/v1': kinds('', 'PriorityClass'),
  'storage.k8s.io/v1': kinds('CSIStorageCapacity', 'StorageClass VolumeAttachment CSINode CSIDriver'),
  'storage.k8s.io/v1beta1': kinds('', 'VolumeAttributesClass'),
  'storage.k8s.io/v1alpha1': kinds('', 'VolumeAttributesClass'),
  'storagemigration.k8s.io/v1alpha1': kinds('', 'StorageVersionMigration'),
  [clusternetAppsApiVersion]: clusternetApps,
  [appsApiVersion]: clusternetApps,
  'clusters.clusternet.io/v1beta1': clusternetClusters,
  'clusters.hawser.io/v1beta1': clusternetClusters,
};

/** The group of an apiVersion: '' for the core group ("v1"). */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.lastIndexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

const versionsByGroup = new Map<string, string[]>();
for (const apiVersion of Object.keys(knownKinds)) {
  const group = groupOf(apiVersion);
  versionsByGroup.set(group, [...(versionsByGroup.get(group) ?? []), apiVersion]);
}
// Removed whole (its kinds moved to apps, networking.k8s.io and policy): still known, so refused.
versionsByGroup.set('extensions', []);

/** Whether the hub knows every kind of this apiVersion's group. */
export function isKnownGroup(apiVersion: string): boolean {
  return versionsByGroup.has(groupOf(apiVersion));
}

export type KindLookup =
  /** A known kind of a known group/version. */
  | { known: true; info: KindInfo }
  /** A group the hub does not know (a CRD's): any kind is accepted. */
  | { known: false }
  /** A known group that has no such version or kind: refused, with why. */
  | { refused: 'kind' | 'version'; message: string };

/** Looks a kind up; a known group without that version or kind is refused with a message naming both. */
export function lookupKind(apiVersion: string, kind: string): KindLookup {
  const table = knownKinds[apiVersion];
  if (table) {
    const info = Object.hasOwn(table, kind) ? table[kind] : undefined;
    if (info) return { known: true, info };
    return {
      refused: 'kind',
      message: `${boundedName(apiVersion)} has no kind ${boundedName(kind)} (its kinds: ${Object.keys(table).sort().join(', ')})`,
    };
  }
  const group = groupOf(apiVersion);
  const versions = versionsByGroup.get(group);
  if (!versions) return { known: false };
  return {
    refused: 'version',
    message: `${boundedName(apiVersion)} is not served by Kubernetes v1.33 or Clusternet (group ${group || 'core'} serves ${versions.length ? versions.join(', ') : 'no version'})`,
  };
}

/** A name as it is when short and plain, else quoted and cut (it is user input). */
function boundedName(value: string): string {
  return /^[A-Za-z0-9./-]{1,100}$/.test(value) ? value : quoteBounded(value, 100);
}
