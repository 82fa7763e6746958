// What a frame may be answered with. Pure: the runner feeds it what it sent
// and what came back; it says whether that was a coded refusal or a valid
// answer, and if not, names the finding with a stable signature.

import { agentFrameCodec, ErrorCode, hubFrameCodec, isErrorCode, type wire } from '../src/tunnel/index.js';

/** Where a stream is: before its hello, after a welcome, or waiting for approval. */
export type StreamState = 'fresh' | 'session' | 'pending';

/** What the hub does with a frame, judged from our own decode with the hub's codec. */
export type FrameKind =
  | { kind: 'hello' }
  | { kind: 'heartbeat'; sequence: number }
  | { kind: 'malformed' }
  /** A frame this hub knows (e.g. sync_ack) that the fuzzer's streams never negotiate or expect. */
  | { kind: 'unexpected'; frameCase: string }
  /** Past --max-frame-bytes: the hub's codec refuses it. */
  | { kind: 'oversized' }
  /** Past grpc-js's receive limit (2x --max-frame-bytes): grpc-js refuses it before the codec. */
  | { kind: 'huge' };

export function frameKind(bytes: Uint8Array, maxFrameBytes: number): FrameKind {
  if (bytes.byteLength > 2 * maxFrameBytes) return { kind: 'huge' };
  const inbound = agentFrameCodec(maxFrameBytes).decode(bytes);
  if (!inbound.ok) return inbound.error.code === ErrorCode.OversizedFrame ? { kind: 'oversized' } : { kind: 'malformed' };
  const frame = inbound.frame.frame;
  if (frame?.$case === 'hello') return { kind: 'hello' };
  if (frame?.$case === 'heartbeat') return { kind: 'heartbeat', sequence: frame.value.sequence };
  return frame ? { kind: 'unexpected', frameCase: frame.$case } : { kind: 'malformed' };
}

/** What came back for a frame. */
export type Reply =
  | { kind: 'frame'; bytes: Buffer }
  | { kind: 'status'; grpcCode: number; hawserCode: string | undefined; details: string }
  | { kind: 'timeout'; waitedMs: number };

export interface Finding {
  /** Stable across runs: the class of the problem, for grouping and known lists. */
  signature: string;
  detail: string;
}

export type Verdict =
  | { ok: true; answer: string; next: StreamState | 'ended' | 'goodbye'; goodbyeCode?: string }
  | { ok: false; answer: string; finding: Finding };

const grpcStatusNames = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];
export const grpcStatusName = (code: number): string => grpcStatusNames[code] ?? `STATUS_${code}`;

/**
 * Codes that name what was wrong with the frame itself. When the hub answers
 * with one of these it must be the right one; other codes (registration
 * outcomes, rate limits, admission limits) may answer any frame.
 */
const frameCodes = new Set<string>([ErrorCode.MalformedFrame, ErrorCode.OversizedFrame, ErrorCode.UnexpectedFrame]);

/** The frame code a refusal must carry if it carries one; undefined: no frame code fits. */
function expectedFrameCode(kind: FrameKind, state: StreamState): string | undefined {
  switch (kind.kind) {
    case 'malformed':
      return ErrorCode.MalformedFrame;
    case 'oversized':
    case 'huge':
      return ErrorCode.OversizedFrame;
    case 'heartbeat':
      // On a session a heartbeat may be refused for its content (e.g. a status past a size bound).
      return state === 'fresh' ? ErrorCode.UnexpectedFrame : undefined;
    case 'hello':
      return state === 'session' ? ErrorCode.UnexpectedFrame : undefined;
    case 'unexpected':
      return ErrorCode.UnexpectedFrame;
  }
}

function judgeRefusal(code: string | undefined, kind: FrameKind, state: StreamState, via: string): Verdict {
  const answer = `${via}:${code ?? 'none'}`;
  if (code === undefined || !isErrorCode(code)) {
    return { ok: false, answer, finding: { signature: `${via}-with-unknown-code`, detail: `${via} code ${JSON.stringify(code)} is not a hawser code` } };
  }
  if (code === ErrorCode.Internal) {
    return { ok: false, answer, finding: { signature: 'internal-error', detail: `${via} HAWSER_INTERNAL for a ${kind.kind} frame` } };
  }
  if (frameCodes.has(code) && code !== expectedFrameCode(kind, state)) {
    return {
      ok: false,
      answer,
      finding: { signature: `wrong-code:${code}-for-${kind.kind}-in-${state}`, detail: `${kind.kind} frame in state ${state} refused as ${code}` },
    };
  }
  return { ok: true, answer, next: via === 'goodbye' ? 'goodbye' : 'ended', goodbyeCode: code };
}

/** Judges the first reply to a frame of `kind` sent in `state`. */
export function judgeReply(kind: FrameKind, state: StreamState, reply: Reply): Verdict {
  if (reply.kind === 'timeout') {
    return { ok: false, answer: 'timeout', finding: { signature: `hang-after-${kind.kind}-in-${state}`, detail: `no answer within ${reply.waitedMs}ms` } };
  }
  if (reply.kind === 'status') {
    if (reply.hawserCode === undefined) {
      const name = grpcStatusName(reply.grpcCode);
      return {
        ok: false,
        answer: `status:${name}`,
        finding:
          reply.grpcCode === 0
            ? { signature: `ended-without-answer-to-${kind.kind}-in-${state}`, detail: 'the stream ended with OK and no answer' }
            : { signature: `status-without-hawser-code:${name}-for-${kind.kind}-in-${state}`, detail: `${name}: ${reply.details.slice(0, 200)}` },
      };
    }
    return judgeRefusal(reply.hawserCode, kind, state, 'status');
  }
  const decoded = hubFrameCodec(Number.MAX_SAFE_INTEGER).decode(reply.bytes);
  if (!decoded.ok) {
    return { ok: false, answer: 'undecodable', finding: { signature: 'undecodable-reply', detail: decoded.error.message } };
  }
  const frame = decoded.frame.frame as wire.ConnectResponse['frame'];
  const answer = frame?.$case ?? 'none';
  const wrong = (why: string): Verdict => ({
    ok: false,
    answer,
    finding: { signature: `wrong-answer:${answer}-to-${kind.kind}-in-${state}`, detail: why },
  });
  switch (frame?.$case) {
    case 'goodbye':
      return judgeRefusal(frame.value.code, kind, state, 'goodbye');
    case 'welcome':
      return kind.kind === 'hello' && state === 'fresh' ? { ok: true, answer, next: 'session' } : wrong('welcome answers only a first hello');
    case 'registrationPending':
      return kind.kind === 'hello' && state === 'fresh' ? { ok: true, answer, next: 'pending' } : wrong('pending answers only a first hello');
    case 'heartbeatAck':
      if (kind.kind !== 'heartbeat' || state !== 'session') return wrong('an ack answers only a heartbeat on a session');
      if (frame.value.sequence !== kind.sequence) return wrong(`ack for sequence ${frame.value.sequence}, heartbeat had ${kind.sequence}`);
      return { ok: true, answer, next: 'session' };
    default:
      return wrong('reply carries no frame');
  }
}

/** After a Goodbye the stream must end with a status carrying the same code. */
export function judgeStatusAfterGoodbye(goodbyeCode: string, reply: Reply): Finding | undefined {
  if (reply.kind === 'timeout') return { signature: `hang-after-goodbye:${goodbyeCode}`, detail: `no status within ${reply.waitedMs}ms after Goodbye ${goodbyeCode}` };
  if (reply.kind === 'frame') return { signature: 'frame-after-goodbye', detail: `a frame of ${reply.bytes.length} bytes followed Goodbye ${goodbyeCode}` };
  if (reply.hawserCode === undefined) {
    return { signature: `status-without-hawser-code:${grpcStatusName(reply.grpcCode)}-after-goodbye`, detail: `after Goodbye ${goodbyeCode}: ${reply.details.slice(0, 200)}` };
  }
  if (reply.hawserCode !== goodbyeCode) {
    return { signature: 'status-code-differs-from-goodbye', detail: `Goodbye ${goodbyeCode}, status ${reply.hawserCode}` };
  }
  return undefined;
}

/** After we half-close (end our side, as an agent that stops cleanly), the hub must end the stream too. */
export function judgeEndOfStream(state: StreamState, reply: Reply): Finding | undefined {
  if (reply.kind === 'timeout') return { signature: `hang-after-half-close-in-${state}`, detail: `the stream did not end within ${reply.waitedMs}ms of our half-close` };
  if (reply.kind === 'frame') return { signature: `frame-after-half-close-in-${state}`, detail: `a frame of ${reply.bytes.length} bytes came after our half-close` };
  if (reply.grpcCode !== 0 && reply.hawserCode === undefined) {
    return { signature: `status-without-hawser-code:${grpcStatusName(reply.grpcCode)}-after-half-close`, detail: `after half-close: ${reply.details.slice(0, 200)}` };
  }
  if (reply.hawserCode !== undefined && !isErrorCode(reply.hawserCode)) {
    return { signature: 'status-with-unknown-code', detail: `after half-close: ${reply.hawserCode}` };
  }
  return undefined;
}
