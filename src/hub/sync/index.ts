export { type ClusterSyncCounters, defaultSyncOptions, manifestsDigestAt, type SyncDeps, syncHandlerFactory, type SyncOptions, SyncSessions, SyncStats } from './handler.js';
export { confirmPrune, type ConfirmPruneRequest, type ConfirmPruneResult, parseConfirmPrune } from './confirm.js';
export { manifestContent, subsNameLabel, subsNamespaceLabel } from './objects.js';
export {
  type ClusterSyncStatusBody,
  clusterSyncStatusApiVersion,
  confirmPruneCommand,
  type PruneHeldStatus,
  readSyncStatus,
  syncStatusAfter,
  writeApplyReport,
} from './status.js';
export { defaultFanoutEvents, type FeedChange, ManifestFanout } from './fanout.js';
