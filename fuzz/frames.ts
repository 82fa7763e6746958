// Fuzz cases: what one stream sends. Pure: a (seed, index) pair always gives
// the same case, so any case of any run can be replayed alone.

import { wire } from '../src/tunnel/index.js';
import { Prng } from './prng.js';
import {
  encodeFields,
  invalidUtf8Samples,
  lenField,
  overflowingVarint,
  parseFields,
  varint,
  type WireField,
  WireType,
} from './protowire.js';

/** Every kind of case the generator makes; each must show up in a run of a few thousand. */
/** The first ConnectRequest oneof number no hub knows yet (see proto/hawser/v1/tunnel.proto). */
export const firstUnknownRequestCase = 6;

export const caseClasses = [
  'random-bytes',
  'empty-frame',
  'truncated',
  'byte-mutation',
  'wrong-wire-type',
  'unknown-field',
  'unknown-oneof',
  'huge-labels',
  'huge-status-map',
  'invalid-utf8',
  'varint-overflow',
  'heartbeat-first',
  'hello-twice',
  'hello-after-welcome',
  'session-heartbeats',
  'oversized',
  'huge-frame',
  'half-close',
] as const;
export type CaseClass = (typeof caseClasses)[number];

/** Relative frequency of each class. Cheap, many-frame session cases dominate; frames past grpc-js's limit are rare (each is > 2x the limit). */
export const classWeights: Readonly<Record<CaseClass, number>> = {
  'random-bytes': 8,
  'empty-frame': 1,
  truncated: 8,
  'byte-mutation': 10,
  'wrong-wire-type': 8,
  'unknown-field': 6,
  'unknown-oneof': 4,
  'huge-labels': 2,
  'huge-status-map': 2,
  'invalid-utf8': 5,
  'varint-overflow': 5,
  'heartbeat-first': 3,
  'hello-twice': 3,
  'hello-after-welcome': 3,
  'session-heartbeats': 30,
  oversized: 1,
  'huge-frame': 1,
  'half-close': 1,
};

export interface FuzzStep {
  readonly bytes: Buffer;
  /** What the generator made, for the report (e.g. "heartbeat, truncated at 7 of 31"). */
  readonly note: string;
}

export interface FuzzCase {
  readonly seed: number;
  readonly index: number;
  readonly cls: CaseClass;
  /**
   * The stream first says a valid hello with the worker's own cluster
   * credential (the runner adds it: credentials exist only at run time), and
   * `steps` follow on the authenticated session.
   */
  readonly session: boolean;
  readonly steps: readonly FuzzStep[];
  /** After the steps, end our side of the stream (as an agent that stops cleanly) and expect the hub to end it too. */
  readonly halfClose: boolean;
}

export interface GeneratorOptions {
  seed: number;
  /** The hub's real token: hellos carrying it reach registration instead of stopping at the token check. */
  bootstrapToken: string;
  /** The hub's --max-frame-bytes. */
  maxFrameBytes: number;
  /**
   * Cluster ids (with a name each) that valid bootstrap hellos use. A small
   * fixed pool: with auto-approve every fresh id would become a cluster, and
   * the hub's store would grow with the run, not with its state.
   */
  strangers: ReadonlyArray<{ id: string; name: string }>;
}

/** Names the generator uses in bootstrap hellos: the pool of `n` strangers for a seed. */
export function strangerPool(seed: number, n = 8): Array<{ id: string; name: string }> {
  const prng = new Prng(seed, 0xfffffffe);
  return Array.from({ length: n }, (_, i) => ({ id: prng.uuid(), name: `fuzz-stranger-${i}` }));
}

// ------------------------------------------------------------ valid frames

function labels(prng: Prng, n: number, valid: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) {
    const key = valid ? `k${i}.example.com/l${prng.text(prng.between(1, 20))}` : prng.text(prng.between(1, 30), 'ab!@ _/.-Z');
    out[key] = valid ? prng.text(prng.between(0, 30)) : prng.text(prng.between(0, 80), 'xy!@ _/.-');
  }
  return out;
}

export function randomHello(prng: Prng, o: GeneratorOptions): wire.Hello {
  const stranger = prng.pick(o.strangers);
  const authKind = prng.weighted({ realToken: 6, badToken: 2, credential: 2, none: 1 });
  const auth: wire.Hello['auth'] =
    authKind === 'realToken'
      ? { $case: 'bootstrapToken', value: o.bootstrapToken }
      : authKind === 'badToken'
        ? { $case: 'bootstrapToken', value: `${prng.text(6)}.${prng.text(16)}` }
        : authKind === 'credential'
          ? { $case: 'clusterCredential', value: `hwc_${prng.text(43)}` }
          : undefined;
  // fromPartial: fields a later wire version adds get their defaults.
  return wire.Hello.fromPartial({
    clusterId: prng.chance(0.8) ? stranger.id : prng.chance(0.5) ? prng.uuid() : prng.text(prng.between(0, 40)),
    auth,
    registration: prng.chance(0.9)
      ? {
          name: prng.chance(0.8) ? stranger.name : prng.text(prng.between(0, 70), 'abc-XYZ_.0'),
          namespace: prng.chance(0.8) ? '' : prng.text(prng.between(1, 20)),
          clusterType: prng.pick(['EdgeCluster', '', 'Bad Type!', prng.text(prng.between(1, 70))]),
          labels: prng.chance(0.7) ? labels(prng, prng.between(0, 4), true) : labels(prng, prng.between(1, 4), false),
          syncMode: prng.between(0, 5) as wire.SyncMode,
        }
      : undefined,
    lastAckedRevision: prng.chance(0.8) ? 0 : prng.below(2 ** 32),
    leaseDurationMs: prng.chance(0.7) ? 0 : prng.below(2 ** 32),
    agentVersion: prng.text(prng.between(0, 12)),
  });
}

function clusterStatus(prng: Prng, mapEntries: number): wire.ClusterStatus {
  const map = (n: number): Record<string, string> => {
    const m: Record<string, string> = {};
    for (let i = 0; i < n; i++) m[`${prng.pick(['cpu', 'memory', 'pods', 'hugepages-2Mi', 'x'])}-${i}`] = `${prng.below(1_000_000)}${prng.pick(['', 'Mi', 'Gi', 'm'])}`;
    return m;
  };
  return {
    k8sVersion: `v1.${prng.below(40)}.${prng.below(20)}`,
    platform: prng.pick(['linux/amd64', 'linux/arm64', '']),
    apiServerUrl: `https://127.0.0.1:${prng.between(1, 65535)}`,
    healthz: prng.pick(['ok', 'fail', '']),
    livez: prng.pick(['ok', 'fail', '']),
    readyz: prng.pick(['ok', 'fail', '']),
    nodeStatistics: prng.chance(0.8)
      ? { readyNodes: prng.below(100), notReadyNodes: prng.below(10), unknownNodes: prng.below(10) - (prng.chance(0.1) ? 20 : 0) }
      : undefined,
    allocatable: map(mapEntries),
    capacity: map(mapEntries),
    clusterCidr: prng.pick(['10.244.0.0/16', '', 'not a cidr']),
    serviceCidr: prng.pick(['10.96.0.0/16', '']),
    observedAtUnixMs: prng.chance(0.9) ? 1_700_000_000_000 + prng.below(2 ** 31) : -prng.below(2 ** 31),
  };
}

export function randomHeartbeat(prng: Prng, sequence: number, mapEntries = -1): wire.Heartbeat {
  const withStatus = mapEntries >= 0 || prng.chance(0.4);
  return wire.Heartbeat.fromPartial({
    sequence,
    sentAtUnixMs: 1_700_000_000_000 + prng.below(2 ** 31),
    status: withStatus ? clusterStatus(prng, mapEntries >= 0 ? mapEntries : prng.between(0, 4)) : undefined,
    lastRttMs: prng.chance(0.5) ? 0 : prng.below(2 ** 32),
    statusUnchanged: !withStatus && prng.chance(0.5),
  });
}

export const encodeHello = (hello: wire.Hello): Buffer =>
  Buffer.from(wire.ConnectRequest.encode({ frame: { $case: 'hello', value: hello } }).finish());
export const encodeHeartbeat = (heartbeat: wire.Heartbeat): Buffer =>
  Buffer.from(wire.ConnectRequest.encode({ frame: { $case: 'heartbeat', value: heartbeat } }).finish());

// ----------------------------------------------------------------- mutators

/** Rewrites one field somewhere in the message tree (descending into LEN fields that parse as messages). */
function rewriteField(prng: Prng, bytes: Buffer, rewrite: (f: WireField) => WireField[], depth = 0): { bytes: Buffer; path: string } | undefined {
  const fields = parseFields(bytes);
  if (!fields || fields.length === 0) return undefined;
  const i = prng.below(fields.length);
  const f = fields[i]!;
  if (f.wireType === WireType.Len && f.payload.length > 0 && depth < 4 && prng.chance(0.6)) {
    const inner = rewriteField(prng, f.payload, rewrite, depth + 1);
    if (inner) {
      const next = [...fields];
      next[i] = lenField(f.field, inner.bytes);
      return { bytes: encodeFields(next), path: `${f.field}.${inner.path}` };
    }
  }
  const next = [...fields.slice(0, i), ...rewrite(f), ...fields.slice(i + 1)];
  return { bytes: encodeFields(next), path: String(f.field) };
}

/** A payload of the given wire type. */
function payloadOf(prng: Prng, wireType: WireType): WireField['payload'] {
  switch (wireType) {
    case WireType.Varint:
      return varint(prng.chance(0.5) ? prng.below(300) : BigInt(prng.uint32()) * BigInt(prng.uint32()));
    case WireType.I64:
      return prng.bytes(8);
    case WireType.I32:
      return prng.bytes(4);
    default:
      return prng.bytes(prng.between(0, 24));
  }
}

function wrongWireType(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const r = rewriteField(prng, bytes, (f) => {
    const others = [WireType.Varint, WireType.I64, WireType.Len, WireType.I32, WireType.StartGroup, WireType.EndGroup].filter((t) => t !== f.wireType);
    const wireType = prng.pick(others);
    return [{ field: f.field, wireType, payload: wireType === WireType.StartGroup || wireType === WireType.EndGroup ? Buffer.alloc(0) : payloadOf(prng, wireType) }];
  });
  return r ? { bytes: r.bytes, note: `field ${r.path} given another wire type` } : { bytes, note: 'no field to retype' };
}

function unknownField(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const field = prng.chance(0.5) ? prng.between(13, 200) : prng.between(1000, 2 ** 29 - 1);
  const wireType = prng.pick([WireType.Varint, WireType.I64, WireType.Len, WireType.I32]);
  const extra = { field, wireType, payload: payloadOf(prng, wireType) };
  const r = rewriteField(prng, bytes, (f) => (prng.chance(0.5) ? [f, extra] : [extra, f]));
  return r ? { bytes: r.bytes, note: `unknown field ${field} (wire type ${wireType}) beside field ${r.path}` } : { bytes, note: 'no field' };
}

function invalidUtf8(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const bad = prng.pick(invalidUtf8Samples);
  // Only LEN fields that hold text: any LEN leaf that does not parse as a message, or a chosen one.
  const r = rewriteField(prng, bytes, (f) => {
    if (f.wireType !== WireType.Len) return [f];
    const at = prng.below(f.payload.length + 1);
    return [lenField(f.field, Buffer.concat([f.payload.subarray(0, at), bad, f.payload.subarray(at)]))];
  });
  return r ? { bytes: r.bytes, note: `bytes ${bad.toString('hex')} spliced into field ${r.path}` } : { bytes, note: 'no field' };
}

function varintOverflow(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const kind = prng.weighted({ tooLong: 3, over64: 2, unsafeNumber: 3, hugeLength: 2 });
  const r = rewriteField(prng, bytes, (f) => {
    if (kind === 'hugeLength') {
      // A LEN field whose length varint claims far more than is there, or overflows.
      const len = prng.chance(0.5) ? varint(BigInt(prng.uint32()) << 20n) : overflowingVarint(11);
      return [{ field: f.field, wireType: WireType.Len, payload: f.payload, lengthOverride: len }];
    }
    const payload =
      kind === 'tooLong' ? overflowingVarint(prng.between(11, 20), prng.below(128)) : kind === 'over64' ? overflowingVarint(10, prng.between(2, 127)) : varint(2n ** 53n + BigInt(prng.uint32()));
    return [{ field: f.field, wireType: WireType.Varint, payload }];
  });
  return r ? { bytes: r.bytes, note: `${kind} varint at field ${r.path}` } : { bytes, note: 'no field' };
}

function byteMutation(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  let out = Buffer.from(bytes);
  const ops: string[] = [];
  const n = prng.between(1, 6);
  for (let k = 0; k < n; k++) {
    const op = out.length === 0 ? 'insert' : prng.pick(['flip', 'set', 'insert', 'delete'] as const);
    const at = prng.below(out.length + (op === 'insert' ? 1 : 0));
    if (op === 'flip') out[at] = out[at]! ^ (1 << prng.below(8));
    else if (op === 'set') out[at] = prng.pick([0x00, 0xff, 0x7f, 0x80, prng.below(256)]);
    else if (op === 'insert') out = Buffer.concat([out.subarray(0, at), prng.bytes(prng.between(1, 4)), out.subarray(at)]);
    else out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
    ops.push(`${op}@${at}`);
  }
  return { bytes: out, note: ops.join(',') };
}

function truncate(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const cut = bytes.length <= 1 ? 0 : prng.below(bytes.length - 1) + 1;
  return { bytes: bytes.subarray(0, cut), note: `truncated at ${cut} of ${bytes.length}` };
}

/** One of the mutation kinds applied to a valid frame (used for heartbeats inside sessions). */
function mutate(prng: Prng, bytes: Buffer): { bytes: Buffer; note: string } {
  const kind = prng.weighted({ truncate: 3, bytes: 4, wireType: 3, unknown: 2, utf8: 2, varint: 2 });
  const m =
    kind === 'truncate'
      ? truncate(prng, bytes)
      : kind === 'bytes'
        ? byteMutation(prng, bytes)
        : kind === 'wireType'
          ? wrongWireType(prng, bytes)
          : kind === 'unknown'
            ? unknownField(prng, bytes)
            : kind === 'utf8'
              ? invalidUtf8(prng, bytes)
              : varintOverflow(prng, bytes);
  return { bytes: m.bytes, note: `${kind}: ${m.note}` };
}

// -------------------------------------------------------------------- cases

function step(bytes: Buffer, note: string): FuzzStep {
  return { bytes, note };
}

function someValidFrame(prng: Prng, o: GeneratorOptions, session: boolean): { bytes: Buffer; what: string } {
  if (session || prng.chance(0.3)) return { bytes: encodeHeartbeat(randomHeartbeat(prng, prng.below(2 ** 31))), what: 'heartbeat' };
  return { bytes: encodeHello(randomHello(prng, o)), what: 'hello' };
}

/** The case at `index` of the run named by `o.seed`. */
export function generateCase(o: GeneratorOptions, index: number, forceClass?: CaseClass): FuzzCase {
  const prng = new Prng(o.seed, index);
  const cls = forceClass ?? prng.weighted(classWeights);
  const make = (session: boolean, steps: FuzzStep[], halfClose = false): FuzzCase => ({ seed: o.seed, index, cls, session, steps, halfClose });
  const sessionOrNot = prng.chance(0.5);
  const mutated = (fn: (p: Prng, b: Buffer) => { bytes: Buffer; note: string }, session = sessionOrNot): FuzzCase => {
    const base = someValidFrame(prng, o, session);
    const m = fn(prng, base.bytes);
    return make(session, [step(m.bytes, `${base.what}, ${m.note}`)]);
  };

  switch (cls) {
    case 'random-bytes': {
      const n = prng.chance(0.9) ? prng.between(1, 256) : prng.between(257, 4096);
      return make(sessionOrNot, [step(prng.bytes(n), `${n} random bytes`)]);
    }
    case 'empty-frame':
      return make(sessionOrNot, [step(Buffer.alloc(0), 'empty frame')]);
    case 'truncated':
      return mutated(truncate);
    case 'byte-mutation':
      return mutated(byteMutation);
    case 'wrong-wire-type':
      return mutated(wrongWireType);
    case 'unknown-field':
      return mutated(unknownField);
    case 'invalid-utf8':
      return mutated(invalidUtf8);
    case 'varint-overflow':
      return mutated(varintOverflow);
    case 'unknown-oneof': {
      const base = someValidFrame(prng, o, sessionOrNot);
      const inner = parseFields(base.bytes)?.[0]?.payload ?? Buffer.alloc(0);
      if (prng.chance(0.6) || base.what !== 'hello') {
        // A ConnectRequest frame case this hub does not know: after hello=1, heartbeat=2, sync_ack=3, apply_report=4.
        const field = prng.chance(0.7) ? prng.between(firstUnknownRequestCase, 16) : prng.between(17, 10_000);
        return make(sessionOrNot, [step(encodeFields([lenField(field, inner)]), `ConnectRequest oneof case ${field}`)]);
      }
      // A Hello whose auth oneof is a case this hub does not know.
      const fields = (parseFields(inner) ?? []).filter((f) => f.field !== 2 && f.field !== 3);
      const authField = prng.between(8, 40);
      fields.push(lenField(authField, o.bootstrapToken));
      return make(sessionOrNot, [step(encodeFields([lenField(1, encodeFields(fields))]), `hello with auth oneof case ${authField}`)]);
    }
    case 'huge-labels': {
      const n = prng.pick([100, 300, 1_000, 2_000]);
      const hello = randomHello(prng, o);
      hello.auth = { $case: 'bootstrapToken', value: o.bootstrapToken };
      hello.registration = {
        name: prng.pick(o.strangers).name,
        namespace: '',
        clusterType: 'EdgeCluster',
        labels: labels(prng, n, prng.chance(0.7)),
        syncMode: wire.SyncMode.SYNC_MODE_DUAL,
      };
      const bytes = encodeHello(hello);
      return make(false, [step(bytes, `hello with ${n} labels (${bytes.length} bytes)`)]);
    }
    case 'huge-status-map': {
      const n = prng.pick([100, 1_000, 3_000]);
      const bytes = encodeHeartbeat(randomHeartbeat(prng, prng.below(1000), n));
      return make(true, [step(bytes, `heartbeat with ${n}-entry status maps (${bytes.length} bytes)`)]);
    }
    case 'heartbeat-first': {
      const hb = encodeHeartbeat(randomHeartbeat(prng, prng.below(1000)));
      return make(false, [step(hb, 'heartbeat before any hello'), step(encodeHello(randomHello(prng, o)), 'hello after the heartbeat')]);
    }
    case 'hello-twice': {
      const first = randomHello(prng, o);
      first.auth = { $case: 'bootstrapToken', value: o.bootstrapToken };
      return make(false, [step(encodeHello(first), 'hello'), step(encodeHello(randomHello(prng, o)), 'second hello')]);
    }
    case 'hello-after-welcome':
      return make(true, [
        ...Array.from({ length: prng.below(3) }, (_, i) => step(encodeHeartbeat(randomHeartbeat(prng, i + 1)), 'valid heartbeat')),
        step(encodeHello(randomHello(prng, o)), 'hello on an established session'),
      ]);
    case 'session-heartbeats': {
      const steps: FuzzStep[] = [];
      const n = prng.between(1, 24);
      for (let i = 0; i < n; i++) {
        const hb = encodeHeartbeat(randomHeartbeat(prng, i + 1));
        if (prng.chance(0.85)) {
          steps.push(step(hb, 'valid heartbeat'));
        } else {
          const m = mutate(prng, hb);
          steps.push(step(m.bytes, `heartbeat, ${m.note}`));
        }
      }
      return make(true, steps);
    }
    case 'half-close': {
      const session = prng.chance(0.7);
      const steps = session ? Array.from({ length: prng.below(3) }, (_, i) => step(encodeHeartbeat(randomHeartbeat(prng, i + 1)), 'valid heartbeat')) : [];
      return make(session, steps, true);
    }
    case 'oversized': {
      // Past --max-frame-bytes but within grpc-js's limit (2x): the hub's codec refuses it.
      const n = prng.between(o.maxFrameBytes + 1, 2 * o.maxFrameBytes);
      return make(sessionOrNot, [step(oversizedBytes(prng, n), `${n}-byte frame (limit ${o.maxFrameBytes})`)]);
    }
    case 'huge-frame': {
      // Past grpc-js's own receive limit (2x --max-frame-bytes).
      const n = prng.between(2 * o.maxFrameBytes + 1, 3 * o.maxFrameBytes);
      return make(sessionOrNot, [step(oversizedBytes(prng, n), `${n}-byte frame (grpc-js limit ${2 * o.maxFrameBytes})`)]);
    }
  }
}

/** A frame of about `n` bytes: random bytes, or a heartbeat padded with an unknown field. */
function oversizedBytes(prng: Prng, n: number): Buffer {
  if (prng.chance(0.5)) return prng.bytes(n);
  const hb = encodeHeartbeat(randomHeartbeat(prng, 1));
  const pad = Math.max(0, n - hb.length - 6);
  return Buffer.concat([hb, encodeFields([lenField(99, Buffer.alloc(pad, 0x61))])]);
}
