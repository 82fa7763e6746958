import { randomUUID } from 'node:crypto';
import type { OfflineCache } from '../cache/index.js';

// Who this agent is, kept in its cache so a restart re-joins as the same
// cluster without registering again.

export interface AgentIdentity {
  clusterId: string;
  /** Present once the hub has approved the cluster. */
  credential?: string;
  clusterName?: string;
  dedicatedNamespace?: string;
}

const identityKey = 'identity';

export async function loadOrCreateIdentity(cache: OfflineCache): Promise<AgentIdentity> {
  const existing = await cache.get<AgentIdentity>(identityKey);
  if (existing?.clusterId) return existing;
  const identity: AgentIdentity = { clusterId: randomUUID() };
  await cache.put(identityKey, identity);
  return identity;
}

export async function saveIdentity(cache: OfflineCache, identity: AgentIdentity): Promise<void> {
  await cache.put(identityKey, identity);
}
