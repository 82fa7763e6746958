import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { seeded } from '../test/unit/support.js';
import { FrameCompressor, syncDictionary, wire } from '../src/tunnel/index.js';
import { findRepoRoot } from './common.js';
import { generateCorpus, manifestBytes } from './corpus.js';

// bench/compression: which compressor for sync payloads, on the numbers.
//
// Corpus: bench/corpus.ts, seed 1 (1,000 manifests as compact JSON). The
// dictionaries are derived from seed 2 (a different corpus of the same kinds),
// never from the corpus they are measured on.
//
// Modes, each a ratio (raw bytes / compressed bytes) over the whole corpus:
//   batch        the corpus as one buffer (the ideal; sync sends objects one by one)
//   alone        every object compressed on its own
//   stream       one context for the connection, flushed after every object
//   dict         every object alone, with a dictionary
//   stream+dict  one context for the connection, started from the dictionary
// CPU: ms per MB of raw input, compress and decompress, best of 3.
//
// Candidates: node:zlib (raw deflate, level 6), and the zstd packages when
// they load: zstd-napi (native, streaming, dictionaries), zstd-codec (WASM),
// @mongodb-js/zstd (native prebuilt, whole buffers only). They are not
// dependencies of hawser (only the winner is); to measure them, install each
// in a directory of its own and name the parent:
//   HAWSER_BENCH_CANDIDATES=/tmp/zbench npm run bench:compression
// with /tmp/zbench/zstd-napi, /tmp/zbench/zstd-codec and
// /tmp/zbench/_mongodb-js_zstd each holding `npm install <package>`.

const corpusSeed = 1;
const dictionarySeed = 2;
const objects = Number(process.argv[2] ?? 1000);

type Row = { candidate: string; mode: string; bytes: number; compressMsPerMb?: number; decompressMsPerMb?: number; note?: string };

const corpus = generateCorpus(seeded(corpusSeed), objects).map(manifestBytes);
const rawBytes = corpus.reduce((a, b) => a + b.length, 0);
const rawMb = rawBytes / (1024 * 1024);
const rows: Row[] = [];

function best(run: () => void): number {
  let min = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    run();
    min = Math.min(min, performance.now() - t);
  }
  return min / rawMb;
}

function measure(candidate: string, mode: string, compress: () => Buffer[], decompress: ((parts: Buffer[]) => void) | undefined, note?: string): void {
  let parts: Buffer[] = [];
  const compressMsPerMb = best(() => (parts = compress()));
  const bytes = parts.reduce((a, b) => a + b.length, 0);
  const decompressMsPerMb = decompress ? best(() => decompress(parts)) : undefined;
  rows.push({ candidate, mode, bytes, compressMsPerMb, decompressMsPerMb, note });
}

// --- node:zlib, raw deflate --------------------------------------------------

const deflateDict = Buffer.from(syncDictionary.text);
const level = 6;

/** A connection's context as a sliding window: the last 32 KB sent is the next object's dictionary. */
function windowed(dict: Buffer | undefined): { compress: () => Buffer[]; decompress: (parts: Buffer[]) => void } {
  const slide = (window: Buffer, data: Buffer) => {
    const next = Buffer.concat([window, data]);
    return next.length > 32768 ? next.subarray(next.length - 32768) : next;
  };
  return {
    compress: () => {
      let window = dict ?? Buffer.alloc(0);
      return corpus.map((o) => {
        const out = deflateRawSync(o, { level, ...(window.length > 0 ? { dictionary: window } : {}) });
        window = slide(window, o);
        return out;
      });
    },
    decompress: (parts) => {
      let window = dict ?? Buffer.alloc(0);
      for (const p of parts) {
        const o = inflateRawSync(p, window.length > 0 ? { dictionary: window } : {});
        window = slide(window, o);
      }
    },
  };
}

/** The classic streaming context: one zlib stream flushed with Z_SYNC_FLUSH after each object (as ws's permessage-deflate). */
async function zlibStream(dict: Buffer | undefined): Promise<{ bytes: number; ms: number }> {
  const { createDeflateRaw } = await import('node:zlib');
  const t = performance.now();
  const d = createDeflateRaw({ level, ...(dict ? { dictionary: dict } : {}) });
  let bytes = 0;
  d.on('data', (c: Buffer) => (bytes += c.length));
  for (const o of corpus) {
    d.write(o);
    await new Promise<void>((r) => d.flush(constants.Z_SYNC_FLUSH, () => r()));
  }
  const ms = performance.now() - t;
  d.destroy();
  return { bytes, ms };
}

measure('node:zlib deflate', 'batch', () => [deflateRawSync(Buffer.concat(corpus), { level })], (p) => void inflateRawSync(p[0]!));
measure('node:zlib deflate', 'alone', () => corpus.map((o) => deflateRawSync(o, { level })), (p) => p.forEach((x) => inflateRawSync(x)));
{
  const w = windowed(undefined);
  measure('node:zlib deflate', 'stream (window as dictionary)', w.compress, w.decompress, 'one-shot per object; the last 32 KB sent is the dictionary');
}
measure('node:zlib deflate', 'dict', () => corpus.map((o) => deflateRawSync(o, { level, dictionary: deflateDict })), (p) => p.forEach((x) => inflateRawSync(x, { dictionary: deflateDict })));
{
  const w = windowed(deflateDict);
  measure('node:zlib deflate', 'stream+dict (window as dictionary)', w.compress, w.decompress, 'the window starts as the dictionary');
}
for (const dict of [undefined, deflateDict]) {
  let r = await zlibStream(dict);
  for (let i = 0; i < 2; i++) {
    const again = await zlibStream(dict);
    if (again.ms < r.ms) r = again;
  }
  rows.push({ candidate: 'node:zlib deflate', mode: dict ? 'stream+dict (zlib stream, sync flush)' : 'stream (zlib stream, sync flush)', bytes: r.bytes, compressMsPerMb: r.ms / rawMb, note: 'async stream; time includes a threadpool round trip per object' });
}

// What sync sends (src/tunnel/compression.ts): SyncObject frames, with their
// key, subscription, revision and content_sha256, in runs of 64 (a group)
// through one context per session. And, as a what-if, the same frames without
// the per-object sha256 (32 bytes no compressor can shrink).
function syncFrames(withSha: boolean): Buffer[] {
  return corpus.map((payload, i) => {
    const m = JSON.parse(payload.toString()) as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
    const value: wire.SyncObject = {
      key: { apiVersion: m.apiVersion, kind: m.kind, namespace: m.metadata.namespace ?? '', name: m.metadata.name },
      subscription: 'default/edge-apps',
      revision: 1000 + i * 3,
      op: wire.SyncOp.SYNC_OP_UPSERT,
      encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY,
      contentSha256: withSha ? createHash('sha256').update(payload).digest('hex') : '',
      totalSize: payload.length,
      chunkIndex: 0,
      chunkCount: 1,
      payload,
    };
    return Buffer.from(wire.ConnectResponse.encode({ frame: { $case: 'syncObject', value } }).finish());
  });
}
for (const withSha of [true, false]) {
  const frames = syncFrames(withSha);
  const framed = frames.reduce((a, f) => a + f.length, 0);
  measure(
    'hawser (node:zlib)',
    withSha ? 'sync frames, runs of 64, one context' : 'what-if: the same without content_sha256',
    () => {
      const c = new FrameCompressor();
      const out: Buffer[] = [];
      for (let i = 0; i < frames.length; i += 64) {
        for (const f of frames.slice(i, i + 64)) c.add(f);
        out.push(c.flush()!.data);
      }
      return out;
    },
    undefined,
    `${framed} B of frames (${(framed / rawBytes).toFixed(2)}× the JSON)`,
  );
}

// --- zstd candidates ---------------------------------------------------------

const here = fileURLToPath(import.meta.url);
const root = findRepoRoot(here);
const candidatesDir = process.env['HAWSER_BENCH_CANDIDATES'];

function load(pkg: string): { mod: unknown; dir: string } | undefined {
  const dirs = [root, ...(candidatesDir ? [join(candidatesDir, pkg.replace(/[@/]/g, '_'))] : [])];
  for (const dir of dirs) {
    try {
      const req = createRequire(join(dir, 'package.json'));
      return { mod: req(pkg), dir };
    } catch {
      // not installed there
    }
  }
  return undefined;
}

function footprint(dir: string): string {
  const out = execFileSync('du', ['-sk', join(dir, 'node_modules')], { encoding: 'utf8' });
  return `${(Number(out.split('\t')[0]) / 1024).toFixed(1)} MB installed`;
}

/** A zstd dictionary trained by the zstd CLI (`zstd --train`, 32 KB) on the dictionary seed's corpus. */
function trainZstdDictionary(): Buffer | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'hawser-zdict-'));
  try {
    generateCorpus(seeded(dictionarySeed), 1000).forEach((m, i) => writeFileSync(join(dir, `${i}.json`), manifestBytes(m)));
    const files = readdirSync(dir).map((f) => join(dir, f));
    execFileSync('zstd', ['--train', '-q', '--maxdict=32768', '-o', join(dir, 'dict'), ...files], { stdio: 'ignore' });
    return readFileSync(join(dir, 'dict'));
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const zdict = trainZstdDictionary();
const zstdLevel = 3;

interface ZstdNapiBinding {
  CCtx: new () => {
    setParameter(p: number, v: number): void;
    loadDictionary(d: Uint8Array): void;
    compressStream2(dst: Uint8Array, src: Uint8Array, end: number): [number, number, number];
  };
  DCtx: new () => { loadDictionary(d: Uint8Array): void; decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number] };
  CParameter: { compressionLevel: number };
  EndDirective: { flush: number };
}
interface ZstdNapi {
  compress(b: Uint8Array, p?: { compressionLevel?: number }): Buffer;
  decompress(b: Uint8Array): Buffer;
  Compressor: new () => { setParameters(p: { compressionLevel: number }): void; loadDictionary(d: Uint8Array): void; compress(b: Uint8Array): Buffer };
  Decompressor: new () => { loadDictionary(d: Uint8Array): void; decompress(b: Uint8Array): Buffer };
}

const napi = load('zstd-napi');
if (napi) {
  const z = napi.mod as ZstdNapi;
  const b = createRequire(join(napi.dir, 'package.json'))('zstd-napi/binding') as ZstdNapiBinding;
  const name = `zstd-napi (${footprint(napi.dir)})`;
  const streamed = (dict: Buffer | undefined, inputs: Buffer[] = corpus) => {
    const dst = Buffer.alloc(1 << 20);
    return {
      compress: () => {
        const c = new b.CCtx();
        c.setParameter(b.CParameter.compressionLevel, zstdLevel);
        if (dict) c.loadDictionary(dict);
        return inputs.map((o) => {
          const [left, produced] = c.compressStream2(dst, o, b.EndDirective.flush);
          if (left !== 0) throw new Error('zstd flush incomplete');
          return Buffer.from(dst.subarray(0, produced));
        });
      },
      decompress: (parts: Buffer[]) => {
        const d = new b.DCtx();
        if (dict) d.loadDictionary(dict);
        for (const p of parts) d.decompressStream(dst, p);
      },
    };
  };
  measure(name, 'batch', () => [z.compress(Buffer.concat(corpus), { compressionLevel: zstdLevel })], (p) => void z.decompress(p[0]!));
  measure(name, 'alone', () => corpus.map((o) => z.compress(o, { compressionLevel: zstdLevel })), (p) => p.forEach((x) => z.decompress(x)));
  const s = streamed(undefined);
  measure(name, 'stream', s.compress, s.decompress, 'ZSTD_e_flush after each object');
  if (zdict) {
    const c = new z.Compressor();
    c.setParameters({ compressionLevel: zstdLevel });
    c.loadDictionary(zdict);
    const d = new z.Decompressor();
    d.loadDictionary(zdict);
    measure(name, 'dict', () => corpus.map((o) => c.compress(o)), (p) => p.forEach((x) => d.decompress(x)), 'zstd --train, 32 KB');
    const sd = streamed(zdict);
    measure(name, 'stream+dict', sd.compress, sd.decompress);
  }
  // The same sync frames as hawser's row, in runs of 64 through one zstd context.
  const frames = syncFrames(true);
  const runs: Buffer[] = [];
  for (let i = 0; i < frames.length; i += 64) runs.push(Buffer.concat(frames.slice(i, i + 64)));
  const fr = streamed(zdict, runs);
  measure(name, 'sync frames, runs of 64, one context (+dict)', fr.compress, fr.decompress);
} else rows.push({ candidate: 'zstd-napi', mode: '-', bytes: 0, note: 'not installed' });

interface ZstdCodecModule {
  ZstdCodec: { run(f: (zstd: ZstdCodecApi) => void): void };
}
interface ZstdCodecApi {
  Simple: new () => {
    compress(b: Uint8Array, level: number): Uint8Array;
    decompress(b: Uint8Array): Uint8Array;
    compressUsingDict(b: Uint8Array, d: unknown): Uint8Array;
    decompressUsingDict(b: Uint8Array, d: unknown): Uint8Array;
  };
  Dict: { Compression: new (d: Uint8Array, level: number) => unknown; Decompression: new (d: Uint8Array) => unknown };
}

const codec = load('zstd-codec');
if (codec) {
  const api = await new Promise<ZstdCodecApi>((r) => (codec.mod as ZstdCodecModule).ZstdCodec.run(r));
  const s = new api.Simple();
  const name = `zstd-codec (${footprint(codec.dir)})`;
  measure(name, 'batch', () => [Buffer.from(s.compress(Buffer.concat(corpus), zstdLevel))], (p) => void s.decompress(p[0]!));
  measure(name, 'alone', () => corpus.map((o) => Buffer.from(s.compress(o, zstdLevel))), (p) => p.forEach((x) => s.decompress(x)));
  rows.push({ candidate: name, mode: 'stream', bytes: 0, note: 'no flush per message in its API (Streaming compresses whole inputs; the Transform flushes only at end)' });
  if (zdict) {
    const cd = new api.Dict.Compression(zdict, zstdLevel);
    const dd = new api.Dict.Decompression(zdict);
    measure(name, 'dict', () => corpus.map((o) => Buffer.from(s.compressUsingDict(o, cd))), (p) => p.forEach((x) => s.decompressUsingDict(x, dd)));
  }
} else rows.push({ candidate: 'zstd-codec', mode: '-', bytes: 0, note: 'not installed' });

const mongo = load('@mongodb-js/zstd');
if (mongo) {
  const z = mongo.mod as { compress(b: Buffer, level?: number): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> };
  const name = `@mongodb-js/zstd (${footprint(mongo.dir)})`;
  for (const [mode, inputs] of [['batch', [Buffer.concat(corpus)]], ['alone', corpus]] as const) {
    let t = performance.now();
    const parts: Buffer[] = [];
    for (const o of inputs) parts.push(await z.compress(o, zstdLevel));
    const c = performance.now() - t;
    t = performance.now();
    for (const p of parts) await z.decompress(p);
    const d = performance.now() - t;
    rows.push({ candidate: name, mode, bytes: parts.reduce((a, x) => a + x.length, 0), compressMsPerMb: c / rawMb, decompressMsPerMb: d / rawMb, note: 'async only (threadpool)' });
  }
  rows.push({ candidate: name, mode: 'stream / dict', bytes: 0, note: 'not offered: whole-buffer compress and decompress only' });
} else rows.push({ candidate: '@mongodb-js/zstd', mode: '-', bytes: 0, note: 'not installed' });

// --- report ------------------------------------------------------------------

const fmt = (n: number | undefined) => (n === undefined ? '' : n.toFixed(1));
console.log(`corpus: ${objects} manifests (seed ${corpusSeed}), ${rawBytes} bytes of JSON (${(rawBytes / objects).toFixed(0)} B average); dictionaries from seed ${dictionarySeed}`);
console.log(`deflate dictionary: ${deflateDict.length} B (${syncDictionary.id}); zstd dictionary: ${zdict ? `${zdict.length} B` : 'none (zstd CLI missing)'}`);
console.log('| candidate | mode | bytes | ratio vs JSON | compress ms/MB | decompress ms/MB | note |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const ratio = r.bytes > 0 ? `${(rawBytes / r.bytes).toFixed(1)}×` : '';
  console.log(`| ${r.candidate} | ${r.mode} | ${r.bytes || ''} | ${ratio} | ${fmt(r.compressMsPerMb)} | ${fmt(r.decompressMsPerMb)} | ${r.note ?? ''} |`);
}
