import { quoteBounded } from './quote.js';
import { type Condition, dns1123LabelProblem, isUuid, labelProblems, type ObjectMeta } from './meta.js';

// Cluster resources, shaped and named as Clusternet's clusters.clusternet.io
// group so its users read familiar objects.

export const clustersGroup = 'clusters.hawser.io';
export const clustersApiVersion = `${clustersGroup}/v1beta1`;
/** Clusternet's group, accepted as an alias of ours. */
export const clusternetClustersApiVersion = 'clusters.clusternet.io/v1beta1';

export const syncModes = ['Push', 'Pull', 'Dual'] as const;
export type SyncMode = (typeof syncModes)[number];

export const clusterIdLabel = 'clusters.clusternet.io/cluster-id';
export const clusterNameLabel = 'clusters.clusternet.io/cluster-name';
export const unreachableTaintKey = 'node.clusternet.io/unreachable';

export type TaintEffect = 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';

export interface Taint {
  key: string;
  value?: string;
  effect: TaintEffect;
  timeAdded?: string;
}

export interface ClusterRegistrationRequest {
  apiVersion: typeof clustersApiVersion;
  kind: 'ClusterRegistrationRequest';
  metadata: ObjectMeta;
  spec: {
    clusterId: string;
    clusterType: string;
    clusterName: string;
    clusterNamespace?: string;
    clusterLabels: Record<string, string>;
    syncMode: SyncMode;
    /** The agent's Ed25519 public key (SPKI DER, base64): bound to clusterId at the first request. */
    publicKey?: string;
    /** `SHA256:...` of publicKey, for operators. */
    publicKeyFingerprint?: string;
    /** Id (the public part) of the bootstrap token that made the request: pending caps count per token. */
    bootstrapTokenId?: string;
  };
  status: {
    result?: 'Pending' | 'Approved' | 'Denied';
    errorMessage?: string;
    managedClusterName?: string;
    dedicatedNamespace?: string;
  };
}

export interface NodeStatistics {
  readyNodes: number;
  notReadyNodes: number;
  unknownNodes: number;
}

export interface ManagedClusterStatus {
  lastObservedTime?: string;
  k8sVersion?: string;
  platform?: string;
  apiserverURL?: string;
  healthz?: boolean;
  livez?: boolean;
  readyz?: boolean;
  allocatable?: Record<string, string>;
  capacity?: Record<string, string>;
  clusterCIDR?: string;
  serviceCIDR?: string;
  nodeStatistics?: NodeStatistics;
  heartbeatFrequencySeconds?: number;
  leaseDurationSeconds?: number;
  conditions: Condition[];
}

export interface ManagedCluster {
  apiVersion: typeof clustersApiVersion;
  kind: 'ManagedCluster';
  metadata: ObjectMeta;
  spec: {
    clusterId: string;
    clusterType: string;
    syncMode: SyncMode;
    taints: Taint[];
    /** `SHA256:...` of the agent key bound to this cluster: only that key may renew its credential. */
    publicKeyFingerprint?: string;
  };
  status: ManagedClusterStatus;
}

export interface ClusterRegistrationInput {
  clusterId: string;
  clusterName: string;
  clusterNamespace?: string;
  clusterType: string;
  clusterLabels: Record<string, string>;
  syncMode: SyncMode;
}

/** Every problem with a registration, each naming its field; empty when valid. */
export function registrationProblems(input: ClusterRegistrationInput): string[] {
  const problems: string[] = [];
  if (!isUuid(input.clusterId)) problems.push(`clusterId: ${quoteBounded(input.clusterId)} is not a lower-case UUID`);
  const nameProblem = dns1123LabelProblem(input.clusterName, 60);
  if (nameProblem) problems.push(`clusterName: ${quoteBounded(input.clusterName)} ${nameProblem}`);
  if (input.clusterNamespace) {
    const nsProblem = dns1123LabelProblem(input.clusterNamespace);
    if (nsProblem) problems.push(`clusterNamespace: ${quoteBounded(input.clusterNamespace)} ${nsProblem}`);
  }
  if (!/^[A-Za-z][A-Za-z0-9]{0,62}$/.test(input.clusterType)) {
    problems.push(`clusterType: ${quoteBounded(input.clusterType)} must be 1-63 letters and digits starting with a letter`);
  }
  if (!syncModes.includes(input.syncMode)) {
    problems.push(`syncMode: ${quoteBounded(input.syncMode)} must be one of ${syncModes.join(', ')}`);
  }
  problems.push(...labelProblems(input.clusterLabels, 'clusterLabels'));
  return problems;
}

export function registrationRequestName(clusterId: string): string {
  return `hawser-${clusterId}`;
}

export function dedicatedNamespaceFor(clusterId: string): string {
  return `hawser-${clusterId.slice(0, 8)}`;
}

export function readyCondition(cluster: ManagedCluster): Condition | undefined {
  return cluster.status.conditions.find((c) => c.type === 'Ready');
}
