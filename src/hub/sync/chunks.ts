import type { wire } from '../../tunnel/index.js';

// Large objects in chunks (feature "chunks"), the hub's half: which slices
// of an object's decoded payload go out, where a transfer cut off resumes,
// and how many chunk bytes may wait for the agent's acknowledgement.
//
// A chunk is a slice of the whole decoded payload (chunk_offset says where),
// so a payload encoding applies per frame and a resume never depends on an
// encoder's state from an earlier connection.

export interface ChunkSlice {
  index: number;
  offset: number;
  length: number;
}

/** What the agent said in its hello it holds of an object. */
export interface ChunkResumePoint {
  receivedChunks: number;
  receivedBytes: number;
}

/**
 * The slices still to send of a payload of totalSize bytes, chunkBytes each,
 * from a resume point (or the start). A point that holds everything gives one
 * empty slice at the end: the agent then completes the object it holds.
 * Indexes continue the agent's count; `count` is the number it ends with.
 */
export function planChunks(totalSize: number, chunkBytes: number, resume?: ChunkResumePoint): { slices: ChunkSlice[]; count: number } {
  const start = resume ? resume.receivedBytes : 0;
  let index = resume ? resume.receivedChunks : 0;
  const slices: ChunkSlice[] = [];
  for (let offset = start; offset < totalSize; offset += chunkBytes) slices.push({ index: index++, offset, length: Math.min(chunkBytes, totalSize - offset) });
  if (slices.length === 0) slices.push({ index: index++, offset: totalSize, length: 0 });
  return { slices, count: index };
}

/** The same object, content and all, as the agent's partial one: only then may the transfer resume. */
export function resumePointFor(
  partial: wire.SyncPartialObject | undefined,
  object: { subscription: string; key: wire.SyncObjectKey; contentSha256: string; totalSize: number },
): ChunkResumePoint | undefined {
  if (!partial?.key) return undefined;
  const a = partial.key;
  const b = object.key;
  const same =
    partial.subscription === object.subscription &&
    a.apiVersion === b.apiVersion &&
    a.kind === b.kind &&
    a.namespace === b.namespace &&
    a.name === b.name &&
    partial.contentSha256 === object.contentSha256 &&
    Number(partial.totalSize) === object.totalSize;
  const receivedBytes = Number(partial.receivedBytes);
  if (!same || receivedBytes <= 0 || receivedBytes > object.totalSize || partial.receivedChunks <= 0) return undefined;
  return { receivedChunks: partial.receivedChunks, receivedBytes };
}

/** Names one object's content across frames and acks. */
export function chunkTag(subscription: string, key: wire.SyncObjectKey | undefined, contentSha256: string): string {
  return [subscription, key?.apiVersion, key?.kind, key?.namespace, key?.name, contentSha256].map((p) => encodeURIComponent(p ?? '')).join('/');
}

/**
 * Chunks sent and not yet acknowledged, oldest first. The agent acks them in
 * order; an ack frees its chunk and every earlier one.
 */
export class ChunkWindow {
  private readonly inFlight: Array<{ tag: string; index: number; bytes: number }> = [];
  private unackedBytes = 0;

  get bytes(): number {
    return this.unackedBytes;
  }

  get chunks(): number {
    return this.inFlight.length;
  }

  sent(tag: string, index: number, bytes: number): void {
    this.inFlight.push({ tag, index, bytes });
    this.unackedBytes += bytes;
  }

  /** False when no such chunk is waiting (an ack for nothing this session sent). */
  acked(tag: string, index: number): boolean {
    const at = this.inFlight.findIndex((c) => c.tag === tag && c.index === index);
    if (at < 0) return false;
    for (const c of this.inFlight.splice(0, at + 1)) this.unackedBytes -= c.bytes;
    return true;
  }

  /** Room for a chunk of `bytes`: an empty window always takes one. */
  fits(bytes: number, limitBytes: number): boolean {
    return this.inFlight.length === 0 || this.unackedBytes + bytes <= limitBytes;
  }
}
