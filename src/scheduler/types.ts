// The scheduler's own narrow view of its inputs and outputs. Field names are
// Clusternet's JSON names (pkg/apis/apps/v1alpha1, pkg/apis/clusters/v1beta1
// and the core/v1 types they embed), so a Subscription or ManagedCluster from
// src/api fits these shapes without conversion. Enum-like fields are plain
// strings here: they are user input, and the scheduler names a bad value in
// its error instead of trusting a type.

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: readonly string[];
}

/** metav1.LabelSelector: matchLabels AND matchExpressions (In, NotIn, Exists, DoesNotExist). */
export interface LabelSelector {
  matchLabels?: Readonly<Record<string, string>>;
  matchExpressions?: readonly LabelSelectorRequirement[];
}

/** corev1.NodeSelectorTerm, over cluster labels (Gt and Lt too) and the field metadata.name. */
export interface NodeSelectorTerm {
  matchExpressions?: readonly LabelSelectorRequirement[];
  matchFields?: readonly LabelSelectorRequirement[];
}

/** corev1.PreferredSchedulingTerm. */
export interface PreferredSchedulingTerm {
  weight: number;
  preference: NodeSelectorTerm;
}

/** corev1.Toleration. */
export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number | null;
}

/** corev1.Taint. */
export interface Taint {
  key: string;
  value?: string;
  effect: string;
  timeAdded?: string;
}

/** corev1.TopologySpreadConstraint; the topology is a cluster label. */
export interface TopologySpreadConstraint {
  maxSkew: number;
  topologyKey: string;
  whenUnsatisfiable: string;
  labelSelector?: LabelSelector;
  minDomains?: number;
}

export interface SubGroupStrategy {
  minClusters?: number;
}

export interface Subscriber {
  clusterAffinity?: LabelSelector | null;
  weight?: number;
  subGroupStrategy?: SubGroupStrategy | null;
}

export interface Feed {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export interface DynamicDividing {
  strategy: string;
  topologySpreadConstraints?: readonly TopologySpreadConstraint[];
  preferredClusters?: readonly PreferredSchedulingTerm[];
  minClusters?: number | null;
  maxClusters?: number | null;
}

export interface DividingScheduling {
  type: string;
  dynamicDividing?: DynamicDividing | null;
}

export interface SubscriptionSpec {
  schedulingBySubGroup?: boolean | null;
  schedulingStrategy?: string;
  dividingScheduling?: DividingScheduling | null;
  priority?: number | null;
  subscribers: readonly Subscriber[];
  clusterTolerations?: readonly Toleration[];
  feeds: readonly Feed[];
}

export interface SubscriptionInput {
  metadata: {
    name: string;
    namespace?: string;
    annotations?: Readonly<Record<string, string>>;
    creationTimestamp?: string;
  };
  spec: SubscriptionSpec;
}

export type ResourceList = Readonly<Record<string, string>>;

/**
 * Clusternet's FeedOrder (FeedInventory): a feed with what dividing needs to
 * know about it. A feed without desiredReplicas goes whole to every selected
 * cluster; `feedOrderFor` derives one from a feed's object.
 */
export interface FeedOrder extends Feed {
  desiredReplicas?: number | null;
  replicaRequirements?: {
    resources?: { requests?: ResourceList; limits?: ResourceList };
  };
  replicaJsonPath?: string;
}

export interface ClusterInput {
  metadata: {
    name: string;
    namespace?: string;
    labels?: Readonly<Record<string, string>>;
  };
  spec: {
    clusterId: string;
    taints?: readonly Taint[];
  };
  status?: {
    allocatable?: ResourceList;
    capacity?: ResourceList;
    /** Resources already requested by the pods running in the cluster; absent counts as none. */
    requested?: ResourceList;
    conditions?: ReadonlyArray<{ type: string; status: string }>;
  };
}

export interface ScheduleInput {
  subscription: SubscriptionInput;
  /** Per feed of the subscription (matched by apiVersion, kind, namespace and name); missing means whole. */
  feedOrders?: readonly FeedOrder[];
  clusters: readonly ClusterInput[];
  now: Date;
  /** The placement returned last time; makes the result sticky. */
  previous?: Placement | null;
}

export interface ClusterRef {
  /** Clusternet's namespaced name: `<namespace>/<name>`, or the name alone without a namespace. */
  key: string;
  name: string;
  namespace?: string;
  clusterId: string;
}

export interface FeedPlacement {
  feed: Feed;
  /** Clusternet's feed key: `apiVersion/kind[/namespace]/name`. */
  key: string;
  /** The cluster's share of a divided workload; absent when the object goes whole. */
  replicas?: number;
}

/** Why a placed cluster gets nothing new: it keeps what the previous placement gave it. */
export type HoldReason = 'UntoleratedTaint' | 'TemporarilyTolerated';

export interface ClusterPlacement {
  cluster: ClusterRef;
  feeds: FeedPlacement[];
  held?: HoldReason;
  /** Why it is held, naming the taint. */
  message?: string;
}

export type ExclusionReason =
  | 'NoMatch'
  | 'UntoleratedTaint'
  | 'TolerationExpired'
  | 'TemporarilyTolerated'
  | 'NoCapacity'
  | 'NotSelected';

export interface Exclusion {
  cluster: ClusterRef;
  reason: ExclusionReason;
  message: string;
}

/** A share taken from a cluster because of a taint; it goes back when the cluster does. */
export interface EvictedShare {
  cluster: string;
  feed: string;
  replicas: number;
}

export interface Placement {
  /** Sorted by cluster key. */
  clusters: ClusterPlacement[];
  /** Every cluster given that is not placed, sorted by cluster key. */
  excluded: Exclusion[];
  /** Sorted by cluster, then feed. */
  evicted: EvictedShare[];
}

/** Codes of the scheduler's refusals; the same strings are in src/tunnel/errors.ts. */
export const SchedulingErrorCode = {
  InvalidScheduling: 'HAWSER_INVALID_SCHEDULING',
  NoMatchingClusters: 'HAWSER_NO_MATCHING_CLUSTERS',
  MinClustersNotMet: 'HAWSER_MIN_CLUSTERS_NOT_MET',
  InsufficientCapacity: 'HAWSER_INSUFFICIENT_CAPACITY',
  TopologyUnsatisfiable: 'HAWSER_TOPOLOGY_UNSATISFIABLE',
} as const;
export type SchedulingErrorCode = (typeof SchedulingErrorCode)[keyof typeof SchedulingErrorCode];

export interface SchedulingError {
  code: SchedulingErrorCode;
  message: string;
  /** Why each cluster given was left out, to show beside the error. */
  excluded: Exclusion[];
}

export type ScheduleResult = { ok: true; placement: Placement } | { ok: false; error: SchedulingError };

export const rescheduleAnnotation = 'apps.clusternet.io/reschedule';
export const clusterIdLabelKey = 'clusters.clusternet.io/cluster-id';
export const clusterNameLabelKey = 'clusters.clusternet.io/cluster-name';
