// Just enough of the protobuf wire format to build frames the generated
// encoder never would: fields with the wrong wire type, unknown field
// numbers, varints that overflow, and strings that are not UTF-8.

export const WireType = { Varint: 0, I64: 1, Len: 2, StartGroup: 3, EndGroup: 4, I32: 5 } as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

export interface WireField {
  readonly field: number;
  readonly wireType: WireType;
  /** The field's payload as it appears after the tag (a LEN payload without its length prefix). */
  readonly payload: Buffer;
  /** For LEN fields: length bytes to write instead of the true length (a lie, or an overflowing varint). */
  readonly lengthOverride?: Buffer;
}

export function varint(value: number | bigint): Buffer {
  let v = BigInt(value);
  if (v < 0n) v = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

/** A varint of `length` bytes (11 or more never fits 64 bits; 10 with a high last byte overflows too). */
export function overflowingVarint(length: number, lastByte = 0x01): Buffer {
  const out = Buffer.alloc(length, 0xff);
  out[length - 1] = lastByte & 0x7f;
  return out;
}

export function tag(field: number, wireType: WireType): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

export function encodeField(f: WireField): Buffer {
  const parts = [tag(f.field, f.wireType)];
  if (f.wireType === WireType.Len) parts.push(f.lengthOverride ?? varint(f.payload.length));
  parts.push(f.payload);
  return Buffer.concat(parts);
}

export function encodeFields(fields: readonly WireField[]): Buffer {
  return Buffer.concat(fields.map(encodeField));
}

export const lenField = (field: number, payload: Buffer | string): WireField => ({
  field,
  wireType: WireType.Len,
  payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload,
});
export const varintField = (field: number, value: number | bigint): WireField => ({ field, wireType: WireType.Varint, payload: varint(value) });

function readVarint(buf: Buffer, at: number): { value: bigint; next: number } | undefined {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    const b = buf[at + i];
    if (b === undefined) return undefined;
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) return { value, next: at + i + 1 };
  }
  return undefined;
}

/**
 * Splits a message into its top-level fields, or returns undefined when the
 * bytes are not a well-formed sequence of fields (groups are not used by hawser).
 */
export function parseFields(buf: Buffer): WireField[] | undefined {
  const fields: WireField[] = [];
  let at = 0;
  while (at < buf.length) {
    const t = readVarint(buf, at);
    if (!t) return undefined;
    const field = Number(t.value >> 3n);
    const wireType = Number(t.value & 7n) as WireType;
    if (field === 0) return undefined;
    at = t.next;
    let end: number;
    if (wireType === WireType.Varint) {
      const v = readVarint(buf, at);
      if (!v) return undefined;
      end = v.next;
    } else if (wireType === WireType.I64) {
      end = at + 8;
    } else if (wireType === WireType.I32) {
      end = at + 4;
    } else if (wireType === WireType.Len) {
      const n = readVarint(buf, at);
      if (!n) return undefined;
      at = n.next;
      end = at + Number(n.value);
    } else {
      return undefined;
    }
    if (end > buf.length) return undefined;
    fields.push({ field, wireType, payload: buf.subarray(at, end) });
    at = end;
  }
  return fields;
}

/** Byte sequences that are not UTF-8: a lone continuation byte, a truncated sequence, an overlong form, a surrogate, 0xff. */
export const invalidUtf8Samples: readonly Buffer[] = [
  Buffer.from([0x80]),
  Buffer.from([0xc3]),
  Buffer.from([0xc3, 0x28]),
  Buffer.from([0xc0, 0xaf]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0xff, 0xfe]),
  Buffer.from([0xe2, 0x82]),
];
