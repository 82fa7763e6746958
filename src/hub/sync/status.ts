import { boundedText } from '../../api/index.js';
import type { wire } from '../../tunnel/index.js';
import type { HubStore, KubeObject } from '../store.js';

// The agent's ApplyReports land in one ClusterSyncStatus per cluster (in its
// dedicated namespace, named after it), for the deployer to aggregate into
// Subscription status. Not on the Manifests themselves: a status write there
// would be a Manifest change, sent back to the agent as a delta.

export const clusterSyncStatusApiVersion = 'hawser.io/v1alpha1';
const maxObjects = 10_000;

export async function writeApplyReport(store: HubStore, namespace: string, clusterName: string, report: wire.ApplyReport): Promise<void> {
  const record: KubeObject = {
    apiVersion: clusterSyncStatusApiVersion,
    kind: 'ClusterSyncStatus',
    metadata: { name: clusterName, namespace },
    status: {
      revision: report.revision,
      appliedAt: new Date(report.appliedAtUnixMs).toISOString(),
      pruneRan: report.pruneRan,
      ...(report.objectsOmitted ? { objectsOmitted: report.objectsOmitted } : {}),
      ...(report.pruneHeldReason ? { pruneHeldReason: boundedText(report.pruneHeldReason, 1024) } : {}),
      objects: report.objects.slice(0, maxObjects).map((o) => ({
        apiVersion: boundedText(o.key?.apiVersion ?? '', 256),
        kind: boundedText(o.key?.kind ?? '', 128),
        ...(o.key?.namespace ? { namespace: boundedText(o.key.namespace, 256) } : {}),
        name: boundedText(o.key?.name ?? '', 256),
        subscriptions: o.subscriptions.slice(0, 64).map((s) => boundedText(s, 512)),
        action: boundedText(o.action, 32),
        ...(o.exists === undefined ? {} : { exists: o.exists }),
        ...(o.errorCode ? { error: { code: boundedText(o.errorCode, 64), message: boundedText(o.errorMessage, 1024) } } : {}),
        ...(o.observedStatusJson ? { status: parseStatus(o.observedStatusJson) } : {}),
      })),
    },
  };
  // The next report replaces it: not worth a synchronous disk write per pass.
  await store.put('ClusterSyncStatus', { namespace, name: clusterName }, record, { durable: false });
}

function parseStatus(json: string): unknown {
  try {
    return JSON.parse(json.slice(0, 64 * 1024)) as unknown;
  } catch {
    return undefined;
  }
}
