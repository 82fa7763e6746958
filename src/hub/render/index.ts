// The deployer's rendering: pure functions over data (no I/O).
export { canonicalJson, digestOf, sameJson } from './digest.js';
export { describeFeed, feedKey, feedOf, groupOf, identityOf } from './identity.js';
export { applyFieldPatch, applyJsonPatch, applyMergePatch, maxJsonPatchOperations, parseJsonOrYaml, type PatchResult } from './patch.js';
export { decideRender, type RenderDecision } from './policy.js';
export {
  defaultOverridePolicy,
  defaultPriority,
  ownerName,
  renderCluster,
  renderInputs,
  renderSubscription,
  revisionOf,
  type SubscriptionRenderInput,
} from './render.js';
export type * from './types.js';
export { overrideTypes } from './types.js';
