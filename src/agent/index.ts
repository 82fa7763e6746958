export { AgentCore, type AgentCoreOptions, type AgentDeps } from './agent.js';
export { type AgentState, type AgentStateKind, canTransition } from './state.js';
export { type ClusterReader, KubeClusterReader, loadKubeConfig, StaticClusterReader } from './kube.js';
export { type AgentIdentity, identityFileName, IdentityStore, newIdentity } from './identity.js';
export { type AgentOptions, defaultAgentOptions, resolveAgentOptions, type RunningAgent, startAgent, openAgentCache, cacheDbDirName } from './run.js';
export { parseQuantity, sumQuantities } from './quantity.js';
export { type StoredTrustBundle, trustBundleFileName, TrustStore } from './trust.js';
