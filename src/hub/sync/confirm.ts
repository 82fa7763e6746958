import { quoteBounded } from '../../api/index.js';
import { ErrorCode, HawserError } from '../../tunnel/index.js';
import type { HubStore } from '../store.js';
import type { SyncSessions } from './handler.js';
import { confirmPruneCommand, readSyncStatus } from './status.js';

// An operator releases a held prune (hawser sync confirm-prune): the hub
// checks the confirmation against the hold the agent last reported and sends
// it over the cluster's tunnel. The agent checks again against the hold it
// has (it may have changed since its last report) and ignores a stale one.

export interface ConfirmPruneRequest {
  incarnation: string;
  revision: number;
}

export interface ConfirmPruneResult {
  cluster: string;
  incarnation: string;
  revision: number;
  /** What follows: Push clusters get a new snapshot, the others prune at their next pass. */
  next: string;
}

/** Reads {incarnation, revision} from a request body; a missing or mistyped field is HAWSER_INVALID_OPTION naming it. */
export function parseConfirmPrune(body: unknown): ConfirmPruneRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b['incarnation'] !== 'string' || b['incarnation'] === '') {
    throw new HawserError(ErrorCode.InvalidOption, `incarnation: ${quoteBounded(b['incarnation'])} must be the hold's incarnation, as status shows it`);
  }
  const revision = b['revision'];
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision <= 0) {
    throw new HawserError(ErrorCode.InvalidOption, `revision: ${quoteBounded(revision)} must be the hold's revision (a positive integer), as status shows it`);
  }
  return { incarnation: b['incarnation'], revision };
}

export async function confirmPrune(store: HubStore, sessions: SyncSessions, clusterName: string, named: ConfirmPruneRequest, confirmedBy: string): Promise<ConfirmPruneResult> {
  const cluster = await store.get('ManagedCluster', clusterName);
  const namespace = cluster?.metadata.namespace;
  if (!cluster || !namespace) throw new HawserError(ErrorCode.NotFound, `no cluster named ${quoteBounded(clusterName)}`);
  const held = (await readSyncStatus(store, namespace, clusterName))?.pruneHeld;
  if (!held) {
    throw new HawserError(ErrorCode.PruneConfirmStale, `cluster ${clusterName} reports no held prune: the confirmation for incarnation ${quoteBounded(named.incarnation, 64)} revision ${named.revision} released nothing`);
  }
  if (held.incarnation !== named.incarnation || held.revision !== named.revision) {
    throw new HawserError(
      ErrorCode.PruneConfirmStale,
      `cluster ${clusterName} holds prune for incarnation ${held.incarnation} revision ${held.revision}, not incarnation ${quoteBounded(named.incarnation, 64)} revision ${named.revision}; to release it: ${confirmPruneCommand(clusterName, held.incarnation, held.revision)}`,
    );
  }
  const session = sessions.get(clusterName);
  if (!session) throw new HawserError(ErrorCode.ClusterOffline, `cluster ${clusterName} is not connected: its agent holds the prune; confirm again once it is back`);
  await session.confirmPrune(named, confirmedBy);
  return {
    cluster: clusterName,
    incarnation: named.incarnation,
    revision: named.revision,
    next: session.syncMode === 'Push' ? 'the hub pushes a snapshot, which the agent prunes against' : "prune runs at the agent's next apply pass",
  };
}
