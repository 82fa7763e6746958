import { describe, expect, it } from 'vitest';
import { ConnectRequest, ConnectResponse, SyncMode } from '../../src/gen/hawser/v1/tunnel.js';
import { agentFrameCodec, defaultMaxFrameBytes, hubFrameCodec, type Inbound } from '../../src/tunnel/codec.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';

const hello = ConnectRequest.fromPartial({
  frame: {
    $case: 'hello',
    value: {
      clusterId: '3f2b8c1e-7a4d-4e2f-9b6a-1c0d2e3f4a5b',
      auth: { $case: 'bootstrapToken', value: 'abcdef.0123456789abcdef' },
      registration: {
        name: 'edge-1',
        namespace: 'edge-system',
        clusterType: 'EdgeCluster',
        labels: { env: 'prod', 'topology.kubernetes.io/region': 'eu' },
        syncMode: SyncMode.SYNC_MODE_PULL,
      },
      lastAckedRevision: 42,
      leaseDurationMs: 60_000,
      agentVersion: '0.1.0',
    },
  },
});

const heartbeat = ConnectRequest.fromPartial({
  frame: {
    $case: 'heartbeat',
    value: {
      sequence: 7,
      sentAtUnixMs: 1_735_689_600_000,
      status: {
        k8sVersion: 'v1.33.1',
        platform: 'linux/amd64',
        apiServerUrl: 'https://10.0.0.1:6443',
        healthz: 'ok',
        livez: 'ok',
        readyz: 'failed: HTTP 500',
        nodeStatistics: { readyNodes: 3, notReadyNodes: 1, unknownNodes: 0 },
        allocatable: { cpu: '3500m', memory: '8Gi' },
        capacity: { cpu: '4', memory: '16Gi' },
        clusterCidr: '10.244.0.0/16',
        serviceCidr: '10.96.0.0/12',
        observedAtUnixMs: 1_735_689_599_000,
      },
    },
  },
});

const hubFrames: ConnectResponse[] = [
  ConnectResponse.fromPartial({
    frame: {
      $case: 'welcome',
      value: { clusterName: 'edge-1', dedicatedNamespace: 'hawser-3f2b8c1e', credential: 'hwc_x', leaseDurationMs: 60_000, heartbeatIntervalMs: 20_000 },
    },
  }),
  ConnectResponse.fromPartial({ frame: { $case: 'registrationPending', value: { requestName: 'hawser-abc', message: 'wait' } } }),
  ConnectResponse.fromPartial({ frame: { $case: 'heartbeatAck', value: { sequence: 9, leaseExpiresAtUnixMs: 1_735_689_660_000 } } }),
  ConnectResponse.fromPartial({ frame: { $case: 'goodbye', value: { code: ErrorCode.Superseded, message: 'bye', retryAfterMs: 5_000 } } }),
];

/** Field 1 (length-delimited) claims 5 bytes but only 1 follows. */
const truncated = Uint8Array.from([0x0a, 0x05, 0x01]);
/** A varint that never ends. */
const endlessVarint = Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** Wire type 7 does not exist. */
const badWireType = Uint8Array.from([0x0f, 0x00]);

function expectError<T>(result: Inbound<T>, code: string): HawserError {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error('unreachable');
  expect(result.error).toBeInstanceOf(HawserError);
  expect(result.error.code).toBe(code);
  return result.error;
}

describe('agentFrameCodec', () => {
  const codec = agentFrameCodec();

  it.each([
    ['hello', hello],
    ['heartbeat', heartbeat],
  ])('round-trips a %s frame and reports its size', (_name, frame) => {
    const bytes = codec.encode(frame);
    expect(Buffer.isBuffer(bytes)).toBe(true);
    const result = codec.decode(bytes);
    expect(result).toEqual({ ok: true, frame, bytes: bytes.byteLength });
  });

  it('keeps 64-bit millisecond timestamps exact', () => {
    const result = codec.decode(codec.encode(heartbeat));
    if (!result.ok || result.frame.frame?.$case !== 'heartbeat') throw new Error('expected a heartbeat');
    expect(result.frame.frame.value.sentAtUnixMs).toBe(1_735_689_600_000);
  });

  it.each([
    ['truncated length-delimited field', truncated],
    ['endless varint', endlessVarint],
    ['nonexistent wire type', badWireType],
  ])('turns a %s into HAWSER_MALFORMED_FRAME without throwing', (_name, bytes) => {
    const error = expectError(codec.decode(bytes), ErrorCode.MalformedFrame);
    expect(error.cause).toBeDefined();
    expect(error.message).toContain(`${bytes.byteLength} bytes`);
  });

  it('turns random garbage into an error result, never an exception', () => {
    let seed = 12345;
    const results = Array.from({ length: 500 }, (_, i) => {
      const bytes = Uint8Array.from({ length: 1 + (i % 64) }, () => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed & 0xff;
      });
      const result = codec.decode(bytes);
      expect(result.bytes).toBe(bytes.byteLength);
      return result;
    });
    const refused = results.flatMap((r) => (r.ok ? [] : [r.error.code]));
    // Most garbage is refused; every refusal is a malformed frame.
    expect(refused.length).toBeGreaterThan(250);
    expect(new Set(refused)).toEqual(new Set([ErrorCode.MalformedFrame]));
  });

  it('refuses a valid protobuf that carries no frame as malformed', () => {
    const empty = codec.encode(ConnectRequest.fromPartial({}));
    expect(empty.byteLength).toBe(0);
    const e1 = expectError(codec.decode(empty), ErrorCode.MalformedFrame);
    expect(e1.cause).toBeUndefined();
    // Only an unknown field (99, varint 1): valid protobuf, still no frame.
    const unknownOnly = Uint8Array.from([0x98, 0x06, 0x01]);
    const e2 = expectError(codec.decode(unknownOnly), ErrorCode.MalformedFrame);
    expect(e2.cause).toBeUndefined();
  });

  it('accepts a frame of exactly the limit and refuses one byte more, naming both sizes', () => {
    const bytes = agentFrameCodec().encode(hello);
    const size = bytes.byteLength;
    expect(agentFrameCodec(size).decode(bytes).ok).toBe(true);
    const tight = agentFrameCodec(size - 1).decode(bytes);
    const error = expectError(tight, ErrorCode.OversizedFrame);
    expect(tight.bytes).toBe(size);
    expect(error.message).toContain(`${size} bytes`);
    expect(error.message).toContain(`${size - 1} bytes`);
  });

  it('checks the size before trying to decode (garbage over the limit is oversized)', () => {
    const garbage = new Uint8Array(1_000).fill(0xff);
    expectError(agentFrameCodec(999).decode(garbage), ErrorCode.OversizedFrame);
    expectError(agentFrameCodec(1_000).decode(garbage), ErrorCode.MalformedFrame);
  });

  it('defaults to a 4 MiB limit', () => {
    expect(defaultMaxFrameBytes).toBe(4 * 1024 * 1024);
    const big = ConnectRequest.fromPartial({
      frame: { $case: 'hello', value: { clusterId: 'x', agentVersion: 'v'.repeat(defaultMaxFrameBytes) } },
    });
    const bytes = codec.encode(big);
    expect(bytes.byteLength).toBeGreaterThan(defaultMaxFrameBytes);
    const error = expectError(codec.decode(bytes), ErrorCode.OversizedFrame);
    expect(error.message).toContain(String(defaultMaxFrameBytes));
  });
});

describe('hubFrameCodec', () => {
  const codec = hubFrameCodec();

  it.each(hubFrames.map((f) => [f.frame!.$case, f] as const))('round-trips a %s frame', (_name, frame) => {
    const bytes = codec.encode(frame);
    expect(codec.decode(bytes)).toEqual({ ok: true, frame, bytes: bytes.byteLength });
  });

  it('refuses garbage, empty frames and oversized frames with stable codes', () => {
    expectError(codec.decode(truncated), ErrorCode.MalformedFrame);
    expectError(codec.decode(new Uint8Array(0)), ErrorCode.MalformedFrame);
    const bytes = codec.encode(hubFrames[0]!);
    const error = expectError(hubFrameCodec(10).decode(bytes), ErrorCode.OversizedFrame);
    expect(error.message).toContain(`${bytes.byteLength} bytes`);
    expect(error.message).toContain('10 bytes');
  });
});
