export { AgentCore, type AgentCoreOptions, type AgentDeps } from './agent.js';
export { type AgentState, type AgentStateKind, canTransition } from './state.js';
export { type ClusterReader, KubeClusterReader, StaticClusterReader } from './kube.js';
export { type KubeAccess, LeanKubeConfig, loadKubeConfig } from './kubeconfig.js';
export { type AgentIdentity, identityFileName, IdentityStore, newIdentity } from './identity.js';
export { type AgentOptions, defaultAgentOptions, impersonationPolicyOf, resolveAgentOptions, type RunningAgent, startAgent, openAgentCache, cacheDbDirName } from './run.js';
export { parseQuantity, sumQuantities } from './quantity.js';
export { type StoredTrustBundle, trustBundleFileName, TrustStore } from './trust.js';
export { type AgentFrameHandler, type AgentHandlerFactory, type AgentSessionContext, type HubFrame, type HubFrameKind } from './router.js';
export type { AgentSession } from './session.js';
export { emptySyncState, readSyncState, type SyncState, syncStateCacheKey, writeSyncState } from './sync-state.js';
export { ApplyEngine, type ApplyEngineOptions } from './apply.js';
export {
  type Applier,
  type ApplyAction,
  type DesiredObject,
  type ObjectReport,
  type ObservedCondition,
  type ObservedStatus,
  type ReconcileInput,
  type ReconcileReport,
  observedStatus,
} from './apply-report.js';
export { applyOrder, deleteOrder, phaseOf, type ApplyPhase, type GroupKind } from './apply-order.js';
export { ReconcileLoop, type ReconcileLoopOptions } from './apply-loop.js';
export { type OwnedObjectEvent, type OwnedObjectWatch, type OwnedObjectWatchOptions } from './apply-watch.js';
export {
  type KubeObject,
  managedByLabel,
  managedByLabelPrefix,
  subscriptionsAnnotation,
  subscriptionsAnnotationPrefix,
  fieldManagerFor,
} from './ownership.js';
export {
  defaultImpersonationPolicy,
  groupPatternsFlag,
  type ImpersonationPolicy,
  impersonationRefusal,
  parseImpersonationPatterns,
  type ProxyIdentity,
  userPatternsFlag,
} from './impersonation-policy.js';
export { defaultProxyStreamPool } from './proxy.js';
