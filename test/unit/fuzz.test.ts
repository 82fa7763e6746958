import { describe, expect, it } from 'vitest';
import { caseClasses, encodeHeartbeat, firstUnknownRequestCase, generateCase, type GeneratorOptions, randomHeartbeat, strangerPool } from '../../fuzz/frames.js';
import { frameKind, judgeEndOfStream, judgeReply, judgeStatusAfterGoodbye, type Reply } from '../../fuzz/oracle.js';
import { parseVmRssBytes } from '../../fuzz/monitor.js';
import { Prng } from '../../fuzz/prng.js';
import { encodeFields, lenField, overflowingVarint, parseFields, varint, varintField, WireType } from '../../fuzz/protowire.js';
import { ErrorCode, wire } from '../../src/tunnel/index.js';

// The fuzzer's pure parts: seeded generation, the mutators, and the oracle
// that judges the hub's replies.

const maxFrameBytes = 64 * 1024;
const options = (seed: number): GeneratorOptions => ({ seed, bootstrapToken: 'abcdef.0123456789abcdef', maxFrameBytes, strangers: strangerPool(seed) });
const casesOf = (seed: number, n: number) => Array.from({ length: n }, (_, i) => generateCase(options(seed), i));

describe('Prng', () => {
  it('gives the same sequence for the same seed and stream, and another for another', () => {
    const a = Array.from({ length: 8 }, ((p) => () => p.uint32())(new Prng(42, 7)));
    const b = Array.from({ length: 8 }, ((p) => () => p.uint32())(new Prng(42, 7)));
    const c = Array.from({ length: 8 }, ((p) => () => p.uint32())(new Prng(42, 8)));
    const d = Array.from({ length: 8 }, ((p) => () => p.uint32())(new Prng(43, 7)));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a).not.toEqual(d);
  });

  it('stays in range and covers it', () => {
    const p = new Prng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = p.below(10);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(10);
      seen.add(v);
    }
    expect(seen.size).toBe(10);
    expect(p.uuid()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(() => new Prng(-1)).toThrow(RangeError);
  });
});

describe('protowire', () => {
  it('encodes varints like protobuf and parses what it writes', () => {
    expect(varint(300).toString('hex')).toBe('ac02');
    expect(varint(-1).length).toBe(10);
    const bytes = encodeFields([varintField(1, 150), lenField(2, 'hi')]);
    expect(bytes.toString('hex')).toBe('08960112026869');
    expect(parseFields(bytes)?.map((f) => [f.field, f.wireType, f.payload.toString('hex')])).toEqual([
      [1, WireType.Varint, '9601'],
      [2, WireType.Len, '6869'],
    ]);
    expect(parseFields(Buffer.from([0x12, 0x05, 0x68]))).toBeUndefined();
  });

  it('makes varints the generated decoder refuses', () => {
    const frame = encodeFields([lenField(2, Buffer.concat([Buffer.from([0x08]), overflowingVarint(11)]))]);
    expect(() => wire.ConnectRequest.decode(frame)).toThrow();
  });
});

describe('generateCase', () => {
  it('gives the same frames for the same seed and index, and others for another seed', () => {
    const a = casesOf(7, 300);
    const b = casesOf(7, 300);
    const c = casesOf(8, 300);
    expect(a.map((x) => x.steps.map((s) => s.bytes.toString('hex')))).toEqual(b.map((x) => x.steps.map((s) => s.bytes.toString('hex'))));
    expect(a.map((x) => x.cls)).not.toEqual(c.map((x) => x.cls));
    // A case does not depend on which cases came before it (a replay runs it alone).
    expect(generateCase(options(7), 123)).toEqual(a[123]);
  });

  it('produces every case class and every heartbeat mutator within a few thousand cases', () => {
    const cases = casesOf(11, 3000);
    const classes = new Set(cases.map((c) => c.cls));
    expect([...classes].sort()).toEqual([...caseClasses].sort());
    const notes = cases.filter((c) => c.cls === 'session-heartbeats').flatMap((c) => c.steps.map((s) => s.note));
    for (const kind of ['truncate', 'bytes', 'wireType', 'unknown', 'utf8', 'varint']) {
      expect(notes.some((n) => n.startsWith(`heartbeat, ${kind}:`))).toBe(true);
    }
  });

  it('makes frames that decode, or fail, as their class says', () => {
    const kinds = new Map<string, Set<string>>();
    let validHeartbeats = 0;
    for (const c of casesOf(3, 2000)) {
      const ks = c.steps.map((s) => frameKind(s.bytes, maxFrameBytes).kind);
      for (const k of ks) kinds.set(c.cls, (kinds.get(c.cls) ?? new Set()).add(k));
      switch (c.cls) {
        case 'empty-frame':
        case 'truncated':
          expect(ks).toEqual(['malformed']);
          break;
        case 'oversized':
          expect(ks).toEqual(['oversized']);
          break;
        case 'huge-frame':
          expect(ks).toEqual(['huge']);
          break;
        case 'heartbeat-first':
          expect(ks).toEqual(['heartbeat', 'hello']);
          break;
        case 'hello-twice':
          expect(ks).toEqual(['hello', 'hello']);
          break;
        case 'hello-after-welcome':
          expect(ks.at(-1)).toBe('hello');
          expect(c.session).toBe(true);
          break;
        case 'unknown-field':
          // Unknown fields are skipped: the frame is still what it was.
          expect(['hello', 'heartbeat']).toContain(ks[0]);
          break;
        case 'session-heartbeats':
          c.steps.forEach((s, i) => {
            if (s.note !== 'valid heartbeat') return;
            validHeartbeats++;
            expect(frameKind(s.bytes, maxFrameBytes)).toEqual({ kind: 'heartbeat', sequence: i + 1 });
          });
          break;
        default:
          break;
      }
    }
    // Mutators that can go either way do go both ways.
    for (const cls of ['wrong-wire-type', 'varint-overflow', 'byte-mutation', 'unknown-oneof', 'huge-labels'] as const) {
      const seen = kinds.get(cls) ?? new Set();
      expect(seen.has('malformed') || seen.has('oversized') || seen.has('huge'), `${cls} never refused`).toBe(true);
      expect(seen.has('hello') || seen.has('heartbeat'), `${cls} never decoded`).toBe(true);
    }
    expect(kinds.get('random-bytes')?.has('malformed')).toBe(true);
    expect(validHeartbeats).toBeGreaterThan(100);
  });

  it('puts invalid UTF-8 into the frames of its class', () => {
    const utf8 = casesOf(5, 1000).filter((c) => c.cls === 'invalid-utf8');
    expect(utf8.length).toBeGreaterThan(10);
    for (const c of utf8) expect(c.steps[0]!.note).toMatch(/bytes [0-9a-f]+ spliced into field/);
  });
});

describe('oracle', () => {
  const hb = encodeHeartbeat(randomHeartbeat(new Prng(1), 9));
  const reply = (frame: wire.ConnectResponse): Reply => ({ kind: 'frame', bytes: Buffer.from(wire.ConnectResponse.encode(frame).finish()) });
  const goodbye = (code: string) => reply({ frame: { $case: 'goodbye', value: { code, message: 'm', retryAfterMs: 0 } } });
  const ack = (sequence: number) => reply({ frame: { $case: 'heartbeatAck', value: { sequence, leaseExpiresAtUnixMs: 1 } } });

  it('accepts an ack with the heartbeat sequence on a session, and nothing else for a heartbeat', () => {
    const kind = frameKind(hb, maxFrameBytes);
    expect(judgeReply(kind, 'session', ack(9))).toMatchObject({ ok: true, next: 'session' });
    expect(judgeReply(kind, 'session', ack(8))).toMatchObject({ ok: false, finding: { signature: 'wrong-answer:heartbeatAck-to-heartbeat-in-session' } });
    expect(judgeReply(kind, 'fresh', ack(9))).toMatchObject({ ok: false });
    expect(judgeReply(kind, 'fresh', goodbye(ErrorCode.UnexpectedFrame))).toMatchObject({ ok: true, next: 'goodbye' });
    expect(judgeReply(kind, 'fresh', goodbye(ErrorCode.MalformedFrame))).toMatchObject({ ok: false, finding: { signature: 'wrong-code:HAWSER_MALFORMED_FRAME-for-heartbeat-in-fresh' } });
  });

  it('requires known codes, no internal errors, and statuses that carry the code', () => {
    const kind = { kind: 'malformed' } as const;
    expect(judgeReply(kind, 'fresh', goodbye('HAWSER_NO_SUCH_CODE'))).toMatchObject({ ok: false, finding: { signature: 'goodbye-with-unknown-code' } });
    expect(judgeReply(kind, 'fresh', goodbye(ErrorCode.Internal))).toMatchObject({ ok: false, finding: { signature: 'internal-error' } });
    expect(judgeReply(kind, 'fresh', { kind: 'status', grpcCode: 8, hawserCode: undefined, details: 'too big' })).toMatchObject({
      ok: false,
      finding: { signature: 'status-without-hawser-code:RESOURCE_EXHAUSTED-for-malformed-in-fresh' },
    });
    expect(judgeReply(kind, 'fresh', { kind: 'status', grpcCode: 3, hawserCode: ErrorCode.MalformedFrame, details: '' })).toMatchObject({ ok: true, next: 'ended' });
    expect(judgeReply(kind, 'fresh', { kind: 'timeout', waitedMs: 5 })).toMatchObject({ ok: false, finding: { signature: 'hang-after-malformed-in-fresh' } });
    expect(judgeStatusAfterGoodbye(ErrorCode.MalformedFrame, { kind: 'status', grpcCode: 3, hawserCode: ErrorCode.MalformedFrame, details: '' })).toBeUndefined();
    expect(judgeStatusAfterGoodbye(ErrorCode.MalformedFrame, { kind: 'status', grpcCode: 3, hawserCode: ErrorCode.BadCredential, details: '' })?.signature).toBe(
      'status-code-differs-from-goodbye',
    );
    expect(judgeStatusAfterGoodbye(ErrorCode.MalformedFrame, { kind: 'timeout', waitedMs: 5 })?.signature).toBe('hang-after-goodbye:HAWSER_MALFORMED_FRAME');
    expect(judgeEndOfStream('session', { kind: 'status', grpcCode: 0, hawserCode: undefined, details: '' })).toBeUndefined();
    expect(judgeEndOfStream('session', { kind: 'timeout', waitedMs: 5 })?.signature).toBe('hang-after-half-close-in-session');
  });

  it('lets a welcome or pending answer only a first hello', () => {
    const welcome = reply({ frame: { $case: 'welcome', value: { clusterName: 'a', dedicatedNamespace: 'b', credential: '', leaseDurationMs: 1, heartbeatIntervalMs: 1, credentialExpiresAtUnixMs: 0, publicKeyFingerprint: '', protocolVersion: 0, features: [] } } });
    expect(judgeReply({ kind: 'hello' }, 'fresh', welcome)).toMatchObject({ ok: true, next: 'session' });
    expect(judgeReply({ kind: 'hello' }, 'session', welcome)).toMatchObject({ ok: false });
    expect(judgeReply({ kind: 'malformed' }, 'fresh', welcome)).toMatchObject({ ok: false, finding: { signature: 'wrong-answer:welcome-to-malformed-in-fresh' } });
    expect(judgeReply({ kind: 'hello' }, 'session', goodbye(ErrorCode.UnexpectedFrame))).toMatchObject({ ok: true });
  });
});

describe('oracle: frames this hub knows but the fuzzer never negotiates', () => {
  it('a sync_ack is "unexpected" (UNEXPECTED_FRAME in any state); the first unknown oneof case is malformed', () => {
    const syncAck = Buffer.from(wire.ConnectRequest.encode({ frame: { $case: 'syncAck', value: { incarnation: 'x', revision: 1, sequence: 1 } } }).finish());
    const kind = frameKind(syncAck, maxFrameBytes);
    expect(kind).toEqual({ kind: 'unexpected', frameCase: 'syncAck' });
    const refusal: Reply = { kind: 'status', grpcCode: 9, hawserCode: ErrorCode.UnexpectedFrame, details: '' };
    expect(judgeReply(kind, 'session', refusal)).toMatchObject({ ok: true });
    expect(judgeReply(kind, 'fresh', { ...refusal, hawserCode: ErrorCode.MalformedFrame })).toMatchObject({ ok: false });
    // The fuzzer's "unknown oneof case" must really be unknown to this build, and the one before it known.
    const inner = encodeFields([varintField(1, 1)]);
    expect(frameKind(encodeFields([lenField(firstUnknownRequestCase, inner)]), maxFrameBytes)).toEqual({ kind: 'malformed' });
    expect(frameKind(encodeFields([lenField(firstUnknownRequestCase - 1, inner)]), maxFrameBytes).kind).toBe('unexpected');
  });
});

describe('monitor', () => {
  it('reads VmRSS from /proc/PID/status, and nothing from a zombie', () => {
    expect(parseVmRssBytes('Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t  131072 kB\nThreads:\t7\n')).toBe(128 * 1024 * 1024);
    expect(parseVmRssBytes('Name:\tnode\nState:\tZ (zombie)\n')).toBeUndefined();
  });
});
