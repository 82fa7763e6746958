import { ConnectRequest, ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import { ErrorCode, HawserError } from './errors.js';

/** Default ceiling for one control frame. Big payloads travel in chunks. */
export const defaultMaxFrameBytes = 4 * 1024 * 1024;

/** What arrives from the peer: a decoded frame, or why it could not be one. */
export type Inbound<T> =
  | { readonly ok: true; readonly frame: T; readonly bytes: number }
  | { readonly ok: false; readonly error: HawserError; readonly bytes: number };

export interface FrameCodec<T> {
  encode(frame: T): Buffer;
  /** Never throws: a bad frame becomes an Inbound error the receiver can count and answer. */
  decode(bytes: Uint8Array): Inbound<T>;
}

function codecFor<T>(
  what: string,
  fns: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): T },
  maxFrameBytes: number,
  hasFrame: (m: T) => boolean,
): FrameCodec<T> {
  return {
    encode: (frame) => Buffer.from(fns.encode(frame).finish()),
    decode(bytes) {
      const size = bytes.byteLength;
      if (size > maxFrameBytes) {
        return {
          ok: false,
          bytes: size,
          error: new HawserError(
            ErrorCode.OversizedFrame,
            `${what} of ${size} bytes exceeds the limit of ${maxFrameBytes} bytes`,
          ),
        };
      }
      try {
        const frame = fns.decode(bytes);
        if (!hasFrame(frame)) {
          return {
            ok: false,
            bytes: size,
            error: new HawserError(ErrorCode.MalformedFrame, `${what} of ${size} bytes carries no known frame`),
          };
        }
        return { ok: true, frame, bytes: size };
      } catch (cause) {
        return {
          ok: false,
          bytes: size,
          error: new HawserError(
            ErrorCode.MalformedFrame,
            `${what} of ${size} bytes is not valid protobuf: ${(cause as Error).message}`,
            { cause },
          ),
        };
      }
    },
  };
}

export function agentFrameCodec(maxFrameBytes = defaultMaxFrameBytes): FrameCodec<ConnectRequest> {
  return codecFor('agent frame', ConnectRequest, maxFrameBytes, (m) => m.frame !== undefined);
}

export function hubFrameCodec(maxFrameBytes = defaultMaxFrameBytes): FrameCodec<ConnectResponse> {
  return codecFor('hub frame', ConnectResponse, maxFrameBytes, (m) => m.frame !== undefined);
}
