import { createHash } from 'node:crypto';
import type { KubeObject } from '../store.js';
import { wire } from '../../tunnel/index.js';

// Manifest -> SyncObject: what the agent applies is the Manifest's `template`;
// the Subscription it comes from is in the Manifest's labels (the deployer
// writes them as Clusternet does).

export const subsNameLabel = 'apps.clusternet.io/subs.name';
export const subsNamespaceLabel = 'apps.clusternet.io/subs.namespace';

export interface ManifestContent {
  key: wire.SyncObjectKey;
  subscription: string;
  template: KubeObject | undefined;
}

/** What a Manifest asks the agent to hold; a Manifest without a usable template gives a key from its own name. */
export function manifestContent(manifest: KubeObject): ManifestContent {
  const labels = manifest.metadata.labels ?? {};
  const subscription = `${labels[subsNamespaceLabel] ?? ''}/${labels[subsNameLabel] ?? ''}`;
  const t = manifest['template'] as Partial<KubeObject> | undefined;
  const usable = t && typeof t === 'object' && typeof t.apiVersion === 'string' && typeof t.kind === 'string' && typeof t.metadata?.name === 'string';
  const key: wire.SyncObjectKey = usable
    ? { apiVersion: t.apiVersion!, kind: t.kind!, namespace: t.metadata!.namespace ?? '', name: t.metadata!.name }
    : { apiVersion: '', kind: '', namespace: '', name: manifest.metadata.name };
  return { key, subscription, template: usable ? (t as KubeObject) : undefined };
}

/** The JSON the agent applies (UPSERT); empty for DELETE. */
export function objectPayload(content: ManifestContent, op: wire.SyncOp): Buffer {
  return op === wire.SyncOp.SYNC_OP_UPSERT && content.template ? Buffer.from(JSON.stringify(content.template)) : Buffer.alloc(0);
}

/**
 * One whole object in one frame (identity encoding, chunk 0 of 1). With
 * `localDigest` (feature "sync.local-digest") it goes without its sha256: the
 * agent computes it on receipt.
 */
export function syncObjectFrame(
  content: ManifestContent,
  revision: number,
  op: wire.SyncOp,
  payload = objectPayload(content, op),
  options: { localDigest?: boolean } = {},
): wire.ConnectResponse {
  return {
    frame: {
      $case: 'syncObject',
      value: {
        key: content.key,
        subscription: content.subscription,
        revision,
        op,
        encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY,
        contentSha256: options.localDigest ? '' : createHash('sha256').update(payload).digest('hex'),
        totalSize: payload.length,
        chunkIndex: 0,
        chunkCount: 1,
        payload,
      },
    },
  };
}

/**
 * One chunk of an object: the whole object's frame with a slice of its
 * decoded payload. A payload encoding, when there is one, applies to each
 * chunk's slice on its own (here: identity).
 */
export function syncChunkFrame(whole: wire.SyncObject, slice: Buffer, index: number, count: number, offset: number): wire.ConnectResponse {
  return {
    frame: {
      $case: 'syncObject',
      value: { ...whole, encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY, chunkIndex: index, chunkCount: count, chunkOffset: offset, payload: slice },
    },
  };
}

/** An object the hub does not send because it breaks a limit: the agent keeps what it held and reports `code`. */
export function refusedObjectFrame(content: ManifestContent, revision: number, totalSize: number, code: string, message: string): wire.ConnectResponse {
  const frame = syncObjectFrame(content, revision, wire.SyncOp.SYNC_OP_UPSERT, Buffer.alloc(0));
  return { frame: { $case: 'syncObject', value: { ...(frame.frame as { value: wire.SyncObject }).value, totalSize, refusedCode: code, refusedMessage: message } } };
}

/** Bytes the frame takes on the wire (its protobuf encoding). */
export function frameBytes(frame: wire.ConnectResponse): number {
  return wire.ConnectResponse.encode(frame).finish().length;
}
