import { crc32, deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compressionWindowBytes, FrameCompressor, FrameDecompressor } from '../../src/tunnel/compression.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { syncDictionary } from '../../src/tunnel/sync-dictionary.js';
import { seeded } from './support.js';

// The session compression context (src/tunnel/compression.ts): pure, no I/O.

function manifest(i: number, random: () => number): Buffer {
  return Buffer.from(
    JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: `app-${i}`, namespace: 'edge', labels: { 'app.kubernetes.io/name': `app-${i}`, 'app.kubernetes.io/managed-by': 'Helm' } },
      spec: { replicas: 1 + Math.floor(random() * 5), template: { spec: { containers: [{ name: 'app', image: `registry.example.com/app:${Math.floor(random() * 100)}` }] } } },
    }),
  );
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return err instanceof HawserError ? err.code : `not a HawserError: ${String(err)}`;
  }
  return undefined;
}

describe('frame compression context', () => {
  it('the feature names the dictionary it was built with', () => {
    expect(Feature.CompressionDeflate).toBe(`compression.deflate.${syncDictionary.id}`);
  });

  it('round-trips runs of frames in order; later runs reuse the window and cost less than the first', () => {
    const random = seeded(7);
    const c = new FrameCompressor();
    const d = new FrameDecompressor(1 << 20);
    const sizes: number[] = [];
    for (let run = 0; run < 20; run++) {
      const frames = [manifest(run * 2, random), manifest(run * 2 + 1, random)];
      for (const f of frames) c.add(f);
      const out = c.flush()!;
      expect(out.reset).toBe(run === 0);
      sizes.push(out.data.length);
      expect(d.inflate(out).map((f) => Buffer.from(f).toString())).toEqual(frames.map((f) => f.toString()));
    }
    expect(sizes.at(-1)!).toBeLessThan(sizes[0]!);
    // The context carries across runs: far below each run compressed alone.
    expect(sizes.at(-1)!).toBeLessThan(deflateRawSync(Buffer.concat([manifest(0, seeded(7)), manifest(1, seeded(7))])).length / 2);
  });

  it('nothing queued: no flush', () => {
    expect(new FrameCompressor().flush()).toBeUndefined();
  });

  it('reset() starts a new context that says so; the receiver follows', () => {
    const c = new FrameCompressor();
    const d = new FrameDecompressor(1 << 20);
    c.add(Buffer.from('{"a":1}'));
    d.inflate(c.flush()!);
    c.reset();
    c.add(Buffer.from('{"a":2}'));
    const again = c.flush()!;
    expect(again.reset).toBe(true);
    expect(Buffer.from(d.inflate(again)[0]!).toString()).toBe('{"a":2}');
  });

  it('a new receiver never assumes a context: a run without reset is refused (HAWSER_SYNC_PROTOCOL)', () => {
    const c = new FrameCompressor();
    c.add(Buffer.from('{"first":true}'));
    c.flush();
    c.add(Buffer.from('{"second":true}'));
    const continued = c.flush()!;
    expect(continued.reset).toBe(false);
    expect(code(() => new FrameDecompressor(1 << 20).inflate(continued))).toBe(ErrorCode.SyncProtocol);
  });

  it('frames larger than the window round-trip, and the window keeps only their tail', () => {
    const random = seeded(3);
    const big = Buffer.from(Array.from({ length: 3 * compressionWindowBytes }, () => 'abcdefgh'[Math.floor(random() * 8)]).join(''));
    const c = new FrameCompressor();
    const d = new FrameDecompressor(1 << 20);
    c.add(big);
    c.add(Buffer.from('tail'));
    const frames = d.inflate(c.flush()!);
    expect(frames.map((f) => f.length)).toEqual([big.length, 4]);
    c.add(big.subarray(big.length - 1000));
    expect(Buffer.compare(Buffer.from(d.inflate(c.flush()!)[0]!), big.subarray(big.length - 1000))).toBe(0);
  });

  it('a decompression bomb is refused with HAWSER_SYNC_DECOMPRESSION_LIMIT: declared above the limit, or inflating past raw_size', () => {
    const c = new FrameCompressor();
    c.add(Buffer.alloc(2 << 20, 0x61));
    const bomb = c.flush()!;
    expect(bomb.data.length).toBeLessThan(10_000);
    // The limit is checked before inflating.
    expect(code(() => new FrameDecompressor(1 << 20).inflate(bomb))).toBe(ErrorCode.SyncDecompressionLimit);
    // A raw_size that lies: inflating stops just past it.
    expect(code(() => new FrameDecompressor(4 << 20).inflate({ ...bomb, rawSize: 1000 }))).toBe(ErrorCode.SyncDecompressionLimit);
  });

  it('corrupt data, a short raw_size claim and a frame overrunning the run are refused (HAWSER_SYNC_PROTOCOL)', () => {
    const c = new FrameCompressor();
    c.add(Buffer.from('{"kind":"ConfigMap"}'));
    const run = c.flush()!;
    expect(code(() => new FrameDecompressor(1 << 20).inflate({ ...run, data: Buffer.from('not deflate at all') }))).toBe(ErrorCode.SyncProtocol);
    expect(code(() => new FrameDecompressor(1 << 20).inflate({ ...run, rawSize: run.rawSize + 5 }))).toBe(ErrorCode.SyncProtocol);
    expect(code(() => new FrameDecompressor(1 << 20).inflate({ ...run, rawSize: 0 }))).toBe(ErrorCode.SyncProtocol);
    // A length prefix (200) longer than what follows.
    const overrun = Buffer.from([200, 1, 0x61, 0x62]);
    const data = deflateRawSync(overrun, { dictionary: Buffer.from(syncDictionary.text) });
    expect(code(() => new FrameDecompressor(1 << 20).inflate({ data, rawSize: overrun.length, reset: true, rawCrc32: crc32(overrun) }))).toBe(ErrorCode.SyncProtocol);
  });

  it('a receiver out of step with the sender (a run it never got) refuses the next run instead of reading wrong bytes', () => {
    const c = new FrameCompressor();
    const d = new FrameDecompressor(1 << 20);
    const frame = (i: number) => Buffer.from(JSON.stringify({ kind: 'ConfigMap', metadata: { name: `cm-${i}` }, data: { value: 'x'.repeat(100 + i) } }));
    c.add(frame(1));
    d.inflate(c.flush()!);
    c.add(frame(2));
    c.flush(); // never delivered
    c.add(frame(2));
    const third = c.flush()!;
    expect(code(() => d.inflate(third))).toBe(ErrorCode.SyncProtocol);
  });

  it('a CRC-32 that does not match the inflated bytes is refused (HAWSER_SYNC_PROTOCOL)', () => {
    const c = new FrameCompressor();
    c.add(Buffer.from('{"a":1}'));
    const run = c.flush()!;
    expect(code(() => new FrameDecompressor(1 << 20).inflate({ ...run, rawCrc32: (run.rawCrc32 + 1) >>> 0 }))).toBe(ErrorCode.SyncProtocol);
  });

  it('after a refusal the context is gone: what follows without a reset is refused too', () => {
    const c = new FrameCompressor();
    const d = new FrameDecompressor(1 << 20);
    c.add(Buffer.from('{"a":1}'));
    const first = c.flush()!;
    expect(code(() => d.inflate({ ...first, data: Buffer.from('garbage') }))).toBe(ErrorCode.SyncProtocol);
    c.add(Buffer.from('{"a":2}'));
    expect(code(() => d.inflate(c.flush()!))).toBe(ErrorCode.SyncProtocol);
  });

  it('any sequence of runs and resets round-trips through one sender and one receiver (property)', () => {
    const frame = fc.oneof(fc.uint8Array({ maxLength: 2000 }), fc.string({ maxLength: 3000 }).map((t) => Buffer.from(t)));
    const step = fc.oneof(fc.array(frame, { minLength: 1, maxLength: 6 }), fc.constant('reset' as const));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const c = new FrameCompressor();
        const d = new FrameDecompressor(1 << 20);
        for (const s of steps) {
          if (s === 'reset') {
            c.reset();
            continue;
          }
          for (const f of s) c.add(f);
          const got = d.inflate(c.flush()!).map((f) => Buffer.from(f).toString('hex'));
          expect(got).toEqual(s.map((f) => Buffer.from(f).toString('hex')));
        }
      }),
      { numRuns: 100 },
    );
  });
});
