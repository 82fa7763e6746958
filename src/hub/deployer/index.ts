// The deployer: subscriptions placed and rendered into per-cluster Manifests in the hub store.
export { Deployer, type DeployerOptions } from './deployer.js';
export { feedKeyAnnotation, manifestApiVersion, type ManifestObject, manifestName, ownerOf, subsNameLabel, subsNamespaceLabel, toManifest } from './manifest.js';
export {
  type ClusterRow,
  type ClusterView,
  type DeployerStatus,
  nextTolerationDeadline,
  type OverrideFailureRow,
  reconcileSubscription,
  type ReconcileResult,
  type SubscriptionKey,
} from './reconcile.js';
