export { type ClusterSyncCounters, defaultSyncOptions, type SyncDeps, syncHandlerFactory, type SyncOptions, SyncStats } from './handler.js';
export { manifestContent, subsNameLabel, subsNamespaceLabel } from './objects.js';
export { clusterSyncStatusApiVersion, writeApplyReport } from './status.js';
export { defaultFanoutEvents, type FeedChange, ManifestFanout } from './fanout.js';
