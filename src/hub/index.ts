export {
  defaultHubApiAddress,
  defaultHubListenAddress,
  defaultHubOptions,
  type HubOptions,
  resolveHubOptions,
  type RunningHub,
  startHub,
} from './server.js';
export { defaultHubCoreOptions, HubCore, type HubCoreOptions } from './hub.js';
export { type AgentFrame, type AgentFrameKind, type FrameHandler, type HandlerFactory, type SessionContext } from './session.js';
export { HubMetrics } from './metrics.js';
export { LeaseTracker } from './leases.js';
export {
  type ClusterCredentialRecord,
  compareResourceVersions,
  EmbeddedStore,
  type EmbeddedStoreOptions,
  type Entry,
  type FeedKey,
  type HubStore,
  type KeyOf,
  keyOfObject,
  type KubeObject,
  type ListOptions,
  type ListResult,
  type ObjectKey,
  parseResourceVersion,
  type Precondition,
  type ResourceVersion,
  SealingStore,
  type StoreInfo,
  type StoreOp,
  type StoredKeyOf,
  type StoredKind,
  storedKinds,
  type StoredKinds,
  type WatchEvent,
  type WatchEventType,
  type WatchOptions,
  type WriteOptions,
} from './store.js';
export { applyStatusReport, markReachable, markUnreachable } from './clusters.js';
export { generateBootstrapToken, bootstrapTokenPattern, parseBootstrapTokens } from './tokens.js';
export {
  type ClusterScope,
  generateOperatorToken,
  type Operator,
  type OperatorRole,
  type OperatorTokenEntry,
  parseOperatorTokens,
  proxyScopeError,
  renderOperatorTokens,
} from './auth.js';
export { HubPki, type PkiState, PkiMaintainer, servingRenewAtMs, type TrustBundle } from './pki.js';
export * as render from './render/index.js';
export * as deployer from './deployer/index.js';
