import { ProxyRequestHead, ProxyResponseHead } from '../gen/hawser/v1/proxy.js';
import { ErrorCode, HawserError } from './errors.js';
import type { ByteStream } from './transport.js';

// The proxy's framing on a ByteStream (see proto/hawser/v1/proxy.proto): a
// head, its length first as 4 bytes big-endian, then opaque body bytes. Only
// the head is protobuf; the body is never decoded or re-framed.

/** The stream kind of one proxied request. */
export const proxyStreamKind = 'proxy';
/** Largest head either side accepts: headers of a real request fit many times over. */
export const maxProxyHeadBytes = 256 * 1024;

function framed(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + bytes.byteLength);
  out.writeUInt32BE(bytes.byteLength, 0);
  out.set(bytes, 4);
  return out;
}

export function encodeRequestHead(head: ProxyRequestHead): Buffer {
  return framed(ProxyRequestHead.encode(head).finish());
}

export function encodeResponseHead(head: ProxyResponseHead): Buffer {
  return framed(ProxyResponseHead.encode(head).finish());
}

/** The head read off a stream, and the body bytes that came in the same chunks after it. */
export interface HeadRead<T> {
  head: T;
  /** Body bytes already read past the head (maybe empty). */
  rest: Uint8Array;
  /** The rest of the stream's chunks. */
  chunks: AsyncIterator<Uint8Array>;
}

async function readHead<T>(stream: ByteStream, decode: (bytes: Uint8Array) => T, what: string): Promise<HeadRead<T>> {
  const chunks = stream.chunks()[Symbol.asyncIterator]();
  const parts: Uint8Array[] = [];
  let have = 0;
  let need = -1;
  for (;;) {
    if (need < 0 && have >= 4) {
      const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      parts.splice(0, parts.length, joined);
      need = Buffer.from(joined.buffer, joined.byteOffset, joined.byteLength).readUInt32BE(0);
      if (need > maxProxyHeadBytes) {
        throw new HawserError(ErrorCode.ProxyProtocol, `${what} of ${need} bytes exceeds the limit of ${maxProxyHeadBytes} bytes`);
      }
    }
    if (need >= 0 && have >= 4 + need) {
      const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      let head: T;
      try {
        head = decode(joined.subarray(4, 4 + need));
      } catch (err) {
        throw new HawserError(ErrorCode.ProxyProtocol, `${what} is not decodable: ${(err as Error).message}`, { cause: err });
      }
      return { head, rest: joined.subarray(4 + need), chunks };
    }
    const next = await chunks.next();
    if (next.done) throw new HawserError(ErrorCode.ProxyProtocol, `stream ended before its ${what} (${have} bytes read)`);
    parts.push(next.value);
    have += next.value.byteLength;
  }
}

/** A request head sent whole, as encodeRequestHead framed it (an OpenStream's prelude); throws HAWSER_PROXY_PROTOCOL. */
export function decodeRequestHead(framedHead: Uint8Array): ProxyRequestHead {
  const bytes = Buffer.from(framedHead.buffer, framedHead.byteOffset, framedHead.byteLength);
  const need = bytes.byteLength >= 4 ? bytes.readUInt32BE(0) : -1;
  if (need < 0 || need !== bytes.byteLength - 4) {
    throw new HawserError(ErrorCode.ProxyProtocol, `proxy request head of ${bytes.byteLength} bytes does not hold the length it names`);
  }
  if (need > maxProxyHeadBytes) throw new HawserError(ErrorCode.ProxyProtocol, `proxy request head of ${need} bytes exceeds the limit of ${maxProxyHeadBytes} bytes`);
  try {
    return ProxyRequestHead.decode(bytes.subarray(4));
  } catch (err) {
    throw new HawserError(ErrorCode.ProxyProtocol, `proxy request head is not decodable: ${(err as Error).message}`, { cause: err });
  }
}

export function readRequestHead(stream: ByteStream): Promise<HeadRead<ProxyRequestHead>> {
  return readHead(stream, (b) => ProxyRequestHead.decode(b), 'proxy request head');
}

export function readResponseHead(stream: ByteStream): Promise<HeadRead<ProxyResponseHead>> {
  return readHead(stream, (b) => ProxyResponseHead.decode(b), 'proxy response head');
}

/** The body after a head: what came with it, then every later chunk. */
export async function* bodyAfter<T>(read: HeadRead<T>): AsyncGenerator<Uint8Array> {
  if (read.rest.byteLength > 0) yield read.rest;
  for (;;) {
    const next = await read.chunks.next();
    if (next.done) return;
    yield next.value;
  }
}

/** Resolves on 'drain', or at once when the writable is gone (nothing more will drain it). */
export function drained(out: NodeJS.WritableStream & { destroyed?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    if (out.destroyed) return resolve();
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}
