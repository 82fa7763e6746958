import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StreamRequest, StreamResponse } from '../../src/gen/hawser/v1/tunnel.js';
import { decodeStreamChunk, encodeStreamChunk, JoinedChunk } from '../../src/tunnel/chunk.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

// The data path's hand-written codec must be the wire format proto/ declares.

describe('stream chunk codec', () => {
  it('writes what the generated StreamRequest and StreamResponse read, and reads what they write', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70_000 }), fc.boolean(), (data, end) => {
        const ours = encodeStreamChunk(data, end);
        for (const generated of [StreamRequest, StreamResponse]) {
          const theirs = generated.decode(ours);
          expect(Buffer.from(theirs.data).equals(Buffer.from(data))).toBe(true);
          expect(theirs.end).toBe(end);
          const back = decodeStreamChunk(Buffer.from(generated.encode({ data: Buffer.from(data), end }).finish()));
          expect(back).toMatchObject({ ok: true, end });
          expect(back.ok && Buffer.from(back.data).equals(Buffer.from(data))).toBe(true);
        }
        // Byte for byte what the generated encoder writes.
        expect(ours.equals(Buffer.from(StreamRequest.encode({ data: Buffer.from(data), end }).finish()))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('a joined chunk is the message of its parts joined, with the end marker when asked', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40_000 }), { maxLength: 8 }), fc.boolean(), (parts, end) => {
        const joined = new JoinedChunk(8 * 40_000);
        for (const part of parts) {
          expect(joined.fits(part.byteLength)).toBe(true);
          joined.append(part);
        }
        const all = Buffer.concat(parts);
        expect(joined.seal(end).equals(encodeStreamChunk(all, end))).toBe(true);
      }),
      { numRuns: 200 },
    );
    const full = new JoinedChunk(10);
    full.append(Buffer.alloc(10));
    expect(full.fits(1)).toBe(false);
  });

  it('hands over a view of the message, not a copy', () => {
    const message = encodeStreamChunk(Buffer.from('hello, world'), false);
    const decoded = decodeStreamChunk(message);
    expect(decoded.ok).toBe(true);
    expect(decoded.ok && decoded.data.buffer).toBe(message.buffer);
  });

  it('skips fields it does not know, as protobuf readers do', () => {
    // field 9 varint, field 10 fixed64, field 11 bytes, then data, then field 12 fixed32
    const message = Buffer.concat([
      Buffer.from([0x48, 0x96, 0x01]),
      Buffer.from([0x51, 1, 2, 3, 4, 5, 6, 7, 8]),
      Buffer.from([0x5a, 0x02, 0xaa, 0xbb]),
      encodeStreamChunk(Buffer.from('payload'), true),
      Buffer.from([0x65, 1, 2, 3, 4]),
    ]);
    const decoded = decodeStreamChunk(message);
    expect(decoded).toMatchObject({ ok: true, end: true });
    expect(decoded.ok && Buffer.from(decoded.data).toString()).toBe('payload');
  });

  it('turns a message that is not a chunk into MalformedFrame, never a throw', () => {
    const bad = [
      Buffer.from([0x0a, 0x05, 0x01]), // data longer than the message
      Buffer.from([0x0a]), // a tag with no length
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // a runaway varint
      Buffer.from([0x0b, 0x00]), // wire type 3 (groups)
      Buffer.from([0x51, 0x01]), // fixed64 cut short
    ];
    for (const message of bad) expect(decodeStreamChunk(message)).toMatchObject({ ok: false, error: { code: ErrorCode.MalformedFrame } });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const decoded = decodeStreamChunk(Buffer.from(bytes));
        expect(typeof decoded.ok).toBe('boolean');
      }),
    );
  });
});
