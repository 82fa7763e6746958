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
export { HubMetrics } from './metrics.js';
export { LeaseTracker } from './leases.js';
export { EmbeddedStore, type HubStore, type ClusterCredentialRecord, type StoredKinds } from './store.js';
export { applyStatusReport, markReachable, markUnreachable } from './clusters.js';
export { generateBootstrapToken, bootstrapTokenPattern, parseBootstrapTokens } from './tokens.js';
export {
  generateOperatorToken,
  type Operator,
  type OperatorRole,
  type OperatorTokenEntry,
  parseOperatorTokens,
  renderOperatorTokens,
} from './auth.js';
export { HubPki, type PkiState, PkiMaintainer, servingRenewAtMs, type TrustBundle } from './pki.js';
export * as render from './render/index.js';
