import { createHash } from 'node:crypto';
import type { SyncObjectKey } from '../gen/hawser/v1/tunnel.js';

// What hub and agent both compute over a cluster's desired set, so a hello's
// digest can be compared with the hub's own: an object's id (its
// subscription and key) and the sha256 of its JSON, as the hub sends it.

/** One desired object's id: subscription and key, each percent-encoded, joined by "/". */
export function syncObjectId(subscription: string, key: SyncObjectKey): string {
  return [subscription, key.apiVersion, key.kind, key.namespace, key.name].map(encodeURIComponent).join('/');
}

/** sha256 (hex) of the bytes the hub sends for an object: its JSON. */
export function contentSha256(json: string | Uint8Array): string {
  return createHash('sha256').update(json).digest('hex');
}

/** sha256 (hex) over "<id> <content sha256>\n" lines, sorted by id: the same set gives the same digest in any order. */
export function desiredSetDigest(entries: Iterable<{ id: string; sha256: string }>): string {
  const lines = [...entries].map((e) => `${e.id} ${e.sha256}\n`).sort();
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line);
  return hash.digest('hex');
}
