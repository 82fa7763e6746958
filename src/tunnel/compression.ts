import { crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { varintSize } from './chunk.js';
import { ErrorCode, HawserError } from './errors.js';
import { syncDictionary } from './sync-dictionary.js';

// Sync's compression: one context per session, for the frames of sync
// (feature "compression.deflate.k8s1", proto SyncCompressed). The sender
// queues frames and, at a flush (a group's end, or enough bytes), sends them
// as one raw DEFLATE block whose preset dictionary is the last 32 KiB of
// frames this session sent before — after a reset, the shipped dictionary.
// The receiver keeps the same window, so each flush compresses like one
// stream over the session (bench/compression: 10× on manifests where each
// object alone gets 2×). One-shot zlib calls over an explicit window instead
// of a zlib stream object: synchronous, no threadpool round trip per flush,
// a bounded inflate (maxOutputLength), and an idle session holds no zlib
// state at all (reset() drops the window; the dictionary is shared).
//
// Both classes only encode and decode: which frames go in, when to flush and
// splitting large objects into chunks belong to sync (src/hub/sync,
// src/agent/sync-receiver.ts).

/** DEFLATE's window: older bytes cannot be referenced, so the context keeps no more. */
export const compressionWindowBytes = 32 * 1024;

const dictionary = Buffer.from(syncDictionary.text);
const level = 6;

/** What one flush sends: SyncCompressed's fields. */
export interface CompressedFrames {
  data: Buffer;
  rawSize: number;
  reset: boolean;
  /** CRC-32 of the raw frames: checks that both contexts are in step. */
  rawCrc32: number;
}

function slide(window: Buffer, raw: Buffer): Buffer {
  if (raw.length >= compressionWindowBytes) return Buffer.from(raw.subarray(raw.length - compressionWindowBytes));
  const keep = Math.min(window.length, compressionWindowBytes - raw.length);
  return Buffer.concat([window.subarray(window.length - keep), raw]);
}


/** The sender's context: one per session. */
export class FrameCompressor {
  private window: Buffer | undefined;
  private pending: Buffer[] = [];
  private pendingSize = 0;

  /** Bytes queued and not yet flushed (length prefixes included). */
  get pendingBytes(): number {
    return this.pendingSize;
  }

  /** Queues one encoded frame (a ConnectResponse) for the next flush. */
  add(frame: Uint8Array): void {
    const head = Buffer.allocUnsafe(varintSize(frame.length));
    let n = frame.length;
    let i = 0;
    while (n >= 0x80) {
      head[i++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    head[i] = n;
    this.pending.push(head, Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
    this.pendingSize += head.length + frame.length;
  }

  /** Compresses what is queued (undefined when nothing is). */
  flush(): CompressedFrames | undefined {
    if (this.pendingSize === 0) return undefined;
    const raw = Buffer.concat(this.pending, this.pendingSize);
    this.pending = [];
    this.pendingSize = 0;
    const reset = this.window === undefined;
    const dict = this.window ?? dictionary;
    const data = deflateRawSync(raw, { level, dictionary: dict });
    this.window = slide(dict, raw);
    return { data, rawSize: raw.length, reset, rawCrc32: crc32(raw) };
  }

  /**
   * Forgets the window (an idle session then holds none); the next flush
   * starts a new context from the dictionary and says so (reset).
   */
  reset(): void {
    this.window = undefined;
  }
}

/** The receiver's context: one per session. Each call either returns frames or throws a HawserError. */
export class FrameDecompressor {
  private window: Buffer | undefined;

  /** @param maxRawBytes the most one SyncCompressed may inflate to (the object size limit). */
  constructor(private readonly maxRawBytes: number) {}

  /** The frames (each the bytes of one ConnectResponse) a SyncCompressed holds. */
  inflate(message: { data: Uint8Array; rawSize: number; reset: boolean; rawCrc32: number }): Uint8Array[] {
    const rawSize = message.rawSize;
    // A failure leaves the context unusable: what follows on the session cannot be read.
    const window = message.reset ? dictionary : this.window;
    this.window = undefined;
    if (!window) throw new HawserError(ErrorCode.SyncProtocol, 'compressed sync frames continue a context this session never started (reset unset)');
    if (rawSize > this.maxRawBytes) {
      throw new HawserError(ErrorCode.SyncDecompressionLimit, `compressed sync frames declare raw_size ${rawSize}, above the limit of ${this.maxRawBytes} bytes`);
    }
    if (!Number.isSafeInteger(rawSize) || rawSize < 1) throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames declare raw_size ${rawSize}`);
    let raw: Buffer;
    try {
      // Inflating stops at rawSize + 1 bytes: a bomb costs that much memory, no more.
      raw = inflateRawSync(message.data, { dictionary: window, maxOutputLength: rawSize + 1 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new HawserError(ErrorCode.SyncDecompressionLimit, `compressed sync frames of ${message.data.length} bytes inflate past their raw_size ${rawSize}: refused`);
      }
      throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames of ${message.data.length} bytes do not inflate: ${(err as Error).message}`);
    }
    if (raw.length !== rawSize) {
      const code = raw.length > rawSize ? ErrorCode.SyncDecompressionLimit : ErrorCode.SyncProtocol;
      throw new HawserError(code, `compressed sync frames inflate to ${raw.length} bytes, not their raw_size ${rawSize}`);
    }
    // Raw DEFLATE has no checksum: a context out of step would otherwise inflate to wrong bytes silently.
    if (crc32(raw) !== message.rawCrc32) {
      throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames inflate to bytes whose CRC-32 is not ${message.rawCrc32}: the compression contexts are out of step`);
    }
    const frames = splitFrames(raw);
    this.window = slide(window, raw);
    return frames;
  }
}

function splitFrames(raw: Buffer): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let offset = 0;
  while (offset < raw.length) {
    let length = 0;
    for (let shift = 1; ; shift *= 128) {
      if (offset >= raw.length || shift > 2 ** 28) throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames: bad length prefix at byte ${offset}`);
      const byte = raw[offset++]!;
      length += (byte & 0x7f) * shift;
      if (byte < 0x80) break;
    }
    if (offset + length > raw.length) throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames: a frame of ${length} bytes overruns the data at byte ${offset}`);
    frames.push(raw.subarray(offset, offset + length));
    offset += length;
  }
  return frames;
}
