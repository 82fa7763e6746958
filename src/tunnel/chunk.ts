import { ErrorCode, HawserError } from './errors.js';

// The data path's codec: StreamRequest / StreamResponse (proto/hawser/v1),
// both `bytes data = 1; bool end = 2;`, written and read by hand. Encoding
// copies each chunk once, into the message (so a writer may reuse its buffer
// as soon as write() resolves), and may join several chunks into one message
// (a large frame); decoding copies nothing: the data is a view of the message
// grpc-js handed over.

const dataTag = (1 << 3) | 2; // field 1, length-delimited
const endTag = (2 << 3) | 0; // field 2, varint

export type DecodedChunk =
  | { readonly ok: true; readonly data: Uint8Array; readonly end: boolean }
  | { readonly ok: false; readonly error: HawserError };

/** Bytes of n as a protobuf varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    out[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[offset++] = n;
  return offset;
}

export function encodeStreamChunk(data: Uint8Array | undefined, end: boolean): Buffer {
  const size = data?.byteLength ?? 0;
  const head = size > 0 ? 1 + varintSize(size) : 0;
  const out = Buffer.allocUnsafe(head + size + (end ? 2 : 0));
  let offset = 0;
  if (data && size > 0) {
    out[offset++] = dataTag;
    offset = writeVarint(out, offset, size);
    out.set(data, offset);
    offset += size;
  }
  if (end) {
    out[offset++] = endTag;
    out[offset++] = 1;
  }
  return out;
}

/** Room before a joined message's data for its tag and length (a varint of at most 3 bytes: under 2 MiB). */
const joinHeadroom = 4;

/**
 * A message being joined from several chunks (a large frame): each chunk is
 * copied once, straight into its place; seal() writes the header in front of
 * them, so nothing is copied again.
 */
export class JoinedChunk {
  /** Its memory: give it to a later JoinedChunk of the same capacity once the sealed message is no longer read. */
  readonly buffer: Buffer;
  bytes = 0;

  /** `reuse`: the buffer of an earlier JoinedChunk of this capacity, whose message is gone. */
  constructor(readonly capacity: number, reuse?: Buffer) {
    if (capacity >= 1 << 21) throw new RangeError(`a joined chunk holds less than 2 MiB, not ${capacity} bytes`);
    this.buffer = reuse?.byteLength === joinHeadroom + capacity + 2 ? reuse : Buffer.allocUnsafe(joinHeadroom + capacity + 2);
  }

  /** Whether `bytes` more fit. */
  fits(bytes: number): boolean {
    return this.bytes + bytes <= this.capacity;
  }

  append(chunk: Uint8Array): void {
    this.buffer.set(chunk, joinHeadroom + this.bytes);
    this.bytes += chunk.byteLength;
  }

  /** The message: its data, and the end marker after it when `end`. */
  seal(end: boolean): Buffer {
    // No data field when empty, as encodeStreamChunk writes it.
    const start = this.bytes > 0 ? joinHeadroom - 1 - varintSize(this.bytes) : joinHeadroom;
    if (this.bytes > 0) {
      this.buffer[start] = dataTag;
      writeVarint(this.buffer, start + 1, this.bytes);
    }
    let stop = joinHeadroom + this.bytes;
    if (end) {
      this.buffer[stop++] = endTag;
      this.buffer[stop++] = 1;
    }
    return this.buffer.subarray(start, stop);
  }
}

const empty = new Uint8Array(0);

/** Never throws: a message that is not a stream chunk becomes an error the stream aborts with. */
export function decodeStreamChunk(message: Buffer): DecodedChunk {
  let data: Uint8Array = empty;
  let end = false;
  let offset = 0;
  const malformed = (why: string): DecodedChunk => ({
    ok: false,
    error: new HawserError(ErrorCode.MalformedFrame, `stream message of ${message.byteLength} bytes is not a stream chunk: ${why}`),
  });
  const readVarint = (): number | undefined => {
    let value = 0;
    for (let shift = 1; offset < message.byteLength; shift *= 128) {
      const byte = message[offset++]!;
      value += (byte & 0x7f) * shift;
      if (byte < 0x80) return value <= Number.MAX_SAFE_INTEGER ? value : undefined;
      if (shift > 2 ** 49) return undefined;
    }
    return undefined;
  };
  while (offset < message.byteLength) {
    const tag = readVarint();
    if (tag === undefined) return malformed(`bad tag at byte ${offset}`);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (wireType === 0) {
      const value = readVarint();
      if (value === undefined) return malformed(`bad varint at byte ${offset}`);
      if (field === 2) end = value !== 0;
    } else if (wireType === 2) {
      const length = readVarint();
      if (length === undefined || offset + length > message.byteLength) return malformed(`field ${field} overruns the message`);
      if (field === 1) data = message.subarray(offset, offset + length);
      offset += length;
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4;
      if (offset > message.byteLength) return malformed(`field ${field} overruns the message`);
    } else {
      return malformed(`field ${field} has wire type ${wireType}`);
    }
  }
  return { ok: true, data, end };
}
