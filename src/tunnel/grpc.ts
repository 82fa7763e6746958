import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { constants as http2Constants } from 'node:http2';
import type { Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { TunnelServiceService, type ConnectRequest, type ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import { decodeStreamChunk, encodeStreamChunk, JoinedChunk, type DecodedChunk } from './chunk.js';
import { agentFrameCodec, defaultMaxFrameBytes, hubFrameCodec, type FrameCodec, type Inbound } from './codec.js';
import { ErrorCode, HawserError, isErrorCode } from './errors.js';
import { FrameQueue } from './queue.js';
import {
  AgentStreamRegistry,
  HubConnectionBase,
  RoomWaiters,
  StreamCore,
  abortError,
  maxStreamChunkBytes,
  sessionEnded,
  streamReadBufferBytes,
  streamWriteBufferBytes,
} from './streams.js';
import type {
  AgentChannel,
  AgentConnection,
  AgentOpenStreamOptions,
  AgentConnectionTestHooks,
  ByteStream,
  ConnectionClientTransport,
  ConnectionServerTransport,
  FrameChannel,
  HubChannel,
  HubConnection,
  ServerTransportEvents,
  TunnelListener,
} from './transport.js';

// The one place that knows gRPC: statuses translate to HawserError codes here.

const connectPath = TunnelServiceService.connect.path;
const streamPath = TunnelServiceService.stream.path;
const errorCodeKey = 'hawser-error-code';
const retryAfterKey = 'hawser-retry-after-ms';
/** Response header of a Connect stream: the token its request streams name. */
const sessionKey = 'hawser-session';
const streamKindKey = 'hawser-stream-kind';
const streamIdKey = 'hawser-stream-id';
/** Response header of a Stream the hub took. */
const streamAcceptedKey = 'hawser-stream';

const statusFor: Partial<Record<ErrorCode, grpc.status>> = {
  [ErrorCode.BadBootstrapToken]: grpc.status.UNAUTHENTICATED,
  [ErrorCode.BadCredential]: grpc.status.UNAUTHENTICATED,
  [ErrorCode.CredentialClusterMismatch]: grpc.status.PERMISSION_DENIED,
  [ErrorCode.MalformedFrame]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.OversizedFrame]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.UnexpectedFrame]: grpc.status.FAILED_PRECONDITION,
  [ErrorCode.InvalidRegistration]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.RegistrationDenied]: grpc.status.PERMISSION_DENIED,
  [ErrorCode.ClusterNameTaken]: grpc.status.ALREADY_EXISTS,
  [ErrorCode.AlreadyRegistered]: grpc.status.ALREADY_EXISTS,
  [ErrorCode.RegistrationTimeout]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCode.Superseded]: grpc.status.ABORTED,
  [ErrorCode.HubShuttingDown]: grpc.status.UNAVAILABLE,
  [ErrorCode.Unavailable]: grpc.status.UNAVAILABLE,
  [ErrorCode.HeartbeatTimeout]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCode.Cancelled]: grpc.status.CANCELLED,
  [ErrorCode.RateLimited]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.HeartbeatFlood]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.StatusTooLarge]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.HubBusy]: grpc.status.UNAVAILABLE,
  [ErrorCode.StorageFull]: grpc.status.UNAVAILABLE,
  [ErrorCode.StreamUnbound]: grpc.status.PERMISSION_DENIED,
  [ErrorCode.StreamRefused]: grpc.status.FAILED_PRECONDITION,
  [ErrorCode.SessionEnded]: grpc.status.UNAVAILABLE,
  [ErrorCode.DeadlineExceeded]: grpc.status.DEADLINE_EXCEEDED,
};

// What Node's TLS stack says when the hub's certificate chain does not lead to the CA we trust.
const untrustedCertificate =
  /self[- ]signed certificate|unable to (get local issuer|verify the first) certificate|certificate signature failure|CERT_SIGNATURE_FAILURE|UNABLE_TO_GET_ISSUER_CERT|DEPTH_ZERO_SELF_SIGNED|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE/i;

const certificateNameMismatch = /Hostname\/IP does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/i;
const certificateOutOfDate = /certificate has expired|certificate is not yet valid|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/i;

export function hawserErrorFromStatus(status: { code: number; details?: string; metadata?: grpc.Metadata }): HawserError {
  const declared = status.metadata?.get(errorCodeKey)[0];
  const retryAfter = Number(status.metadata?.get(retryAfterKey)[0] ?? 0) || 0;
  const details = status.details || grpc.status[status.code] || 'stream failed';
  if (typeof declared === 'string' && isErrorCode(declared)) {
    return new HawserError(declared, details, { retryAfterMs: retryAfter });
  }
  if (status.code === grpc.status.CANCELLED) return new HawserError(ErrorCode.Cancelled, details);
  if (status.code === grpc.status.RESOURCE_EXHAUSTED) return new HawserError(ErrorCode.OversizedFrame, details);
  if (status.code === grpc.status.UNAVAILABLE) {
    const untrusted = untrustedCertificate.exec(details);
    if (untrusted) {
      return new HawserError(
        ErrorCode.UntrustedHub,
        `the hub's certificate is not trusted by --parent-ca-file (${untrusted[0]}): give the agent the CA that signed it, the hub's <data-dir>/pki/ca-bundle.crt (after a CA rotation the agent also trusts the bundle the hub pushed)`,
      );
    }
    const wrongName = certificateNameMismatch.exec(details);
    if (wrongName) {
      return new HawserError(
        ErrorCode.UntrustedHub,
        `the hub's certificate does not name the address the agent dials (${wrongName[0]}): use a --parent-url the certificate covers, or add it to the hub with --tls-san`,
      );
    }
    const outOfDate = certificateOutOfDate.exec(details);
    if (outOfDate) {
      return new HawserError(
        ErrorCode.UntrustedHub,
        `the hub's certificate is outside its validity period (${outOfDate[0]}): renew the hub's certificate, or check this machine's clock`,
      );
    }
  }
  return new HawserError(ErrorCode.Unavailable, `${grpc.status[status.code] ?? status.code}: ${details}`);
}

function statusFromHawserError(error: HawserError): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  metadata.set(errorCodeKey, error.code);
  if (error.retryAfterMs > 0) metadata.set(retryAfterKey, String(error.retryAfterMs));
  return { code: statusFor[error.code] ?? grpc.status.INTERNAL, details: error.message, metadata };
}

// Frames are encoded by the channel itself (so it knows their size); grpc-js passes the bytes through.
type Call<In> = grpc.ServerDuplexStream<Inbound<In>, Buffer> | grpc.ClientDuplexStream<Buffer, Inbound<In>>;
const passThrough = (b: Buffer): Buffer => b;

/** Wraps either end of a gRPC duplex call as a FrameChannel. */
class GrpcChannel<In, Out> implements FrameChannel<In, Out> {
  private queue: FrameQueue<Inbound<In>>;
  private done = false;
  /** The peer ended its half (a client's end() reaching the server); ours may still be open. */
  private peerHalfClosed = false;
  private locallyEnded = false;
  private resolveClosed!: (e: HawserError | undefined) => void;
  readonly closed: Promise<HawserError | undefined>;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    private readonly call: Call<In>,
    private readonly codec: FrameCodec<Out>,
    readonly peer: string,
    private readonly isServer: boolean,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    // Bounded inbound queue: a slow consumer pauses the HTTP/2 stream.
    this.queue = new FrameQueue<Inbound<In>>(64, () => call.resume());
    call.on('data', (item: Inbound<In>) => {
      this.bytesIn += item.bytes;
      if (!this.queue.push(item)) call.pause();
    });
    call.on('end', () => {
      this.queue.end();
      if (!this.isServer) return; // the client learns the outcome from 'status'
      this.peerHalfClosed = true;
      this.finish(undefined);
    });
    call.on('error', (err: grpc.ServiceError) => {
      this.queue.end();
      this.finish(hawserErrorFromStatus(err));
    });
    call.on('status', (status: grpc.StatusObject) => {
      this.queue.end();
      this.finish(status.code === grpc.status.OK ? undefined : hawserErrorFromStatus(status));
    });
    call.on('close', () => {
      this.queue.end();
      this.finish(undefined);
    });
    if (isServer) {
      (call as grpc.ServerDuplexStream<Inbound<In>, Buffer>).on('cancelled', () => {
        this.queue.end();
        this.finish(new HawserError(ErrorCode.Cancelled, `agent at ${peer} went away`));
      });
    }
  }

  async send(frame: Out): Promise<void> {
    if (this.done) throw new HawserError(ErrorCode.Unavailable, `stream to ${this.peer} is closed`);
    const bytes = this.codec.encode(frame);
    this.bytesOut += bytes.length;
    let flushed: boolean;
    try {
      flushed = this.call.write(bytes);
    } catch (err) {
      throw new HawserError(ErrorCode.Unavailable, `write to ${this.peer} failed: ${(err as Error).message}`);
    }
    if (flushed) return;
    // Wait for room, but never past the end of the stream (a cancelled call may never drain).
    let onDrain!: () => void;
    const drained = new Promise<void>((resolve) => {
      onDrain = resolve;
      this.call.once('drain', onDrain);
    });
    const ended = this.closed.then((e) => {
      throw e ?? new HawserError(ErrorCode.Unavailable, `stream to ${this.peer} closed while sending`);
    });
    // If the drain wins, the stream's later end must not surface as an unhandled rejection.
    ended.catch(() => undefined);
    try {
      await Promise.race([drained, ended]);
    } finally {
      this.call.off('drain', onDrain);
    }
  }

  frames(): AsyncIterable<Inbound<In>> {
    return this.queue;
  }

  /** Hands the consumer a refusal the transport found itself (a frame over grpc-js's own limit). */
  injectInbound(item: Inbound<In>): void {
    if (!this.done) this.queue.push(item);
  }

  close(error?: HawserError): void {
    if (this.locallyEnded) return;
    // After the peer's half-close our half is still open and must be ended, or
    // the stream never gets its status; after a cancel or reset nothing is left.
    if (this.done && !this.peerHalfClosed) return;
    this.locallyEnded = true;
    if (this.isServer) {
      const call = this.call as grpc.ServerDuplexStream<Inbound<In>, Buffer>;
      // grpc-js turns an 'error' event on a server stream into the call's status.
      if (error) call.emit('error', statusFromHawserError(error));
      else call.end();
    } else {
      const call = this.call as grpc.ClientDuplexStream<Buffer, Inbound<In>>;
      // Ending our half lets the hub see a clean close; cancel() drops the stream at once.
      if (error) call.cancel();
      else call.end();
    }
    this.queue.end();
    this.finish(error);
  }

  private finish(error: HawserError | undefined): void {
    if (this.done) return;
    this.done = true;
    this.resolveClosed(error);
  }
}

/**
 * HTTP/2 flow-control windows: a stream may have this much in flight before
 * its reader takes it (as much as a reader buffers), and the connection many
 * times that, so one bulk transfer neither crawls at HTTP/2's default 64 KiB
 * window nor holds back the control stream and the other requests.
 */
const streamWindowBytes = streamReadBufferBytes;
const connectionWindowBytes = 64 * 1024 * 1024;
const agentWindowBytes = 8 * 1024 * 1024;

/** SETTINGS_MAX_FRAME_SIZE the hub grants: one stream message (a chunk and its framing) fits a frame. */
const maxDataFrameBytes = 512 * 1024;

/** The largest HTTP/2 stream window either side grants: bytes in flight on one stream, unread. */
export const grpcMaxStreamWindowBytes = Math.max(streamWindowBytes, agentWindowBytes);

/** A stream message: one chunk and its few bytes of framing. */
const maxStreamMessageBytes = maxStreamChunkBytes + 16;

/**
 * Buffers of full-size joined messages that were sent, for the next ones: a
 * bulk transfer then allocates (and the GC reclaims) a few, not one per 256 KB.
 */
const spareJoinBuffers: Buffer[] = [];
const maxSpareJoinBuffers = 16;

function recycleJoinBuffer(joined: JoinedChunk): void {
  if (joined.capacity === maxStreamChunkBytes && spareJoinBuffers.length < maxSpareJoinBuffers) spareJoinBuffers.push(joined.buffer);
}

/** A message joined while nothing is in flight starts this small (and grows to maxStreamChunkBytes for what follows). */
const smallJoinBytes = 16 * 1024;

type StreamCall = grpc.ServerDuplexStream<DecodedChunk, Buffer> | grpc.ClientDuplexStream<Buffer, DecodedChunk>;

/**
 * Either end of a Stream call as a ByteStream. Writes wait once more than
 * streamWriteBufferBytes are handed to grpc-js but not yet taken by HTTP/2
 * (whose flow control stalls them while the peer does not read); reads stop
 * taking from grpc-js above streamReadBufferBytes.
 */
class GrpcStream extends StreamCore {
  /** Bytes written to this stream and not yet through grpc-js's write (in flight, sealed or being joined). */
  private unsent = 0;
  private inFlight = false;
  /** Joined messages waiting for the one in flight. */
  private sealed: Array<{ message: Buffer; dataBytes: number; joined?: JoinedChunk }> = [];
  /** Chunks being joined into the next message. */
  private building: JoinedChunk | undefined;
  private endPending = false;
  private endWritten = false;
  private endCallWhenWritten = false;
  private pumpScheduled = false;
  private callEnded = false;
  private readonly room = new RoomWaiters();
  private abortingSelf = false;

  constructor(
    kind: string,
    id: string,
    signal: AbortSignal | undefined,
    private readonly call: StreamCall,
    private readonly server: { reset(): boolean } | undefined,
    readonly peer: string,
  ) {
    super(kind, id, signal, streamReadBufferBytes);
    call.on('data', (message: DecodedChunk) => {
      if (!message.ok) return this.abort(message.error);
      if (message.data.byteLength > maxStreamChunkBytes) {
        return this.abort(
          new HawserError(ErrorCode.OversizedFrame, `stream ${this.describe()} chunk of ${message.data.byteLength} bytes exceeds the limit of ${maxStreamChunkBytes} bytes`),
        );
      }
      if (message.data.byteLength > 0) this.received(message.data);
      if (message.end) this.receivedEnd();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (!this.abortingSelf) this.fail(hawserErrorFromStatus(err));
    });
    if (server) {
      // Our agent half-closes only after its end marker; a bare end is grpc-js ending the
      // readable side of a call the agent reset (its 'cancelled' may come later).
      call.on('end', () => {
        if (!this.hasEnded.peer && !this.isDone) this.fail(new HawserError(ErrorCode.Cancelled, `agent at ${peer} cancelled stream ${this.describe()}`));
      });
      // grpc-js reports 'cancelled' after a clean end too: an error (and its stack) only when it is news.
      (call as grpc.ServerDuplexStream<DecodedChunk, Buffer>).on('cancelled', () => {
        if (!this.isDone) this.fail(new HawserError(ErrorCode.Cancelled, `agent at ${peer} cancelled stream ${this.describe()}`));
      });
    } else {
      call.on('status', (status: grpc.StatusObject) => {
        if (status.code !== grpc.status.OK) return this.fail(hawserErrorFromStatus(status));
        this.receivedEnd();
        this.finish(undefined);
      });
    }
  }

  start(signal: AbortSignal | undefined): void {
    this.checkSignal(signal);
  }

  /**
   * Hands one message to grpc-js. Only one is in flight at a time: grpc-js's
   * client sends a call's messages one by one, each after the last one's write
   * completed, so chunks written meanwhile are joined into one large message
   * (copied once, into it) instead of queueing as many small ones.
   */
  private writeMessage(message: Buffer, dataBytes: number, joined?: JoinedChunk): void {
    this.inFlight = true;
    try {
      this.call.write(message, () => {
        // grpc-js copied the message into its own framing before this: its memory serves again.
        if (joined) recycleJoinBuffer(joined);
        this.inFlight = false;
        this.unsent -= dataBytes;
        if (this.unsent <= streamWriteBufferBytes) this.room.release();
        this.pump();
      });
    } catch (err) {
      this.inFlight = false;
      this.fail(new HawserError(ErrorCode.Unavailable, `write to stream ${this.describe()} failed: ${(err as Error).message}`));
    }
  }

  /** The chunks joined so far, as one message; the end marker rides on it when nothing else is left. */
  private sealBuilding(): { message: Buffer; dataBytes: number; joined?: JoinedChunk } | undefined {
    const b = this.building;
    if (!b) return undefined;
    this.building = undefined;
    const withEnd = this.endPending && this.sealed.length === 0;
    const message = b.seal(withEnd);
    if (withEnd) this.endWritten = true;
    return { message, dataBytes: b.bytes, joined: b };
  }

  /** Sends what waits once nothing is in flight: sealed messages, the one being built, then the end marker. */
  private pump(): void {
    if (this.inFlight || this.isDone) return;
    const next = this.sealed.shift() ?? this.sealBuilding();
    if (next) {
      this.writeMessage(next.message, next.dataBytes, next.joined);
    } else if (this.endPending && !this.endWritten) {
      this.endWritten = true;
      this.writeMessage(encodeStreamChunk(undefined, true), 0);
    }
    if (this.endWritten && !this.inFlight && this.sealed.length === 0 && !this.building) this.afterEndWritten();
  }

  private afterEndWritten(): void {
    if (this.callEnded) return;
    if (!this.server) {
      this.callEnded = true;
      (this.call as grpc.ClientDuplexStream<Buffer, DecodedChunk>).end();
    } else if (this.endCallWhenWritten) {
      this.callEnded = true;
      (this.call as grpc.ServerDuplexStream<DecodedChunk, Buffer>).end();
      this.finish(undefined);
    }
  }

  protected transmit(chunk: Uint8Array): Promise<void> {
    this.unsent += chunk.byteLength;
    // Joined, copied now (the writer may reuse its buffer once write() resolves), and sent when
    // the one in flight is done or, with none in flight, at the end of this turn of the event
    // loop: what is written together (a response's head, its body, the end) goes as one message.
    if (this.building && !this.building.fits(chunk.byteLength)) {
      this.sealed.push({ message: this.building.seal(false), dataBytes: this.building.bytes, joined: this.building });
      this.building = undefined;
    }
    // While one is in flight a bulk transfer joins a large frame; else small writes (a head, a
    // short body) get a small one.
    this.building ??=
      this.inFlight || this.sealed.length > 0
        ? new JoinedChunk(maxStreamChunkBytes, spareJoinBuffers.pop())
        : new JoinedChunk(Math.min(maxStreamChunkBytes, Math.max(smallJoinBytes, 2 * chunk.byteLength)));
    this.building.append(chunk);
    this.pumpSoon();
    if (this.isDone) return Promise.reject(this.failedWith ?? new HawserError(ErrorCode.Unavailable, `stream ${this.describe()} is over`));
    return this.unsent <= streamWriteBufferBytes ? Promise.resolve() : this.room.wait();
  }

  protected transmitEnd(): void {
    this.endPending = true;
    // Nothing can be written after the end, so nothing would join it by waiting for the turn's
    // end: what is built goes now, with the end marker on it (a small answer leaves one turn sooner).
    if (this.inFlight) return;
    this.pump();
  }

  /** pump() at the end of this turn of the event loop (setImmediate: no timer), unless a write in flight will. */
  private pumpSoon(): void {
    if (this.inFlight || this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  protected override bothEnded(): void {
    if (this.server) {
      // The call's status goes once everything before it was handed to grpc-js.
      this.endCallWhenWritten = true;
      this.pump();
    }
    // The agent's end is over when the hub's status arrives.
  }

  protected transmitAbort(reason: HawserError): void {
    this.abortingSelf = true;
    if (!this.server) {
      (this.call as grpc.ClientDuplexStream<Buffer, DecodedChunk>).cancel();
      return;
    }
    // A status goes out after the data before it; while the agent does not read, that is never.
    // Then only a reset ends the stream now (it carries no reason: the agent sees a cancel).
    if (this.unsent > 0 && this.server.reset()) return;
    this.call.emit('error', statusFromHawserError(reason));
  }

  protected pauseInbound(): void {
    this.call.pause();
  }

  protected resumeInbound(): void {
    this.call.resume();
  }

  protected override onFinish(error: HawserError | undefined): void {
    this.sealed = [];
    this.building = undefined;
    // Most streams end with nobody waiting: no error (and its stack) made for nobody.
    if (this.room.waiting) this.room.reject(error ?? new HawserError(ErrorCode.Unavailable, `stream ${this.describe()} is over`));
  }
}

/** The hub's side of one Connect stream and the Stream calls bound to it. */
class GrpcHubConnection extends HubConnectionBase<GrpcChannel<ConnectRequest, ConnectResponse>> {
  constructor(
    control: GrpcChannel<ConnectRequest, ConnectResponse>,
    /** The HTTP/2 connection it arrived on; a stream must arrive on the same one. */
    readonly connectionKey: string | undefined,
    token: string,
  ) {
    super(control, token);
  }
}

/** The agent's side: its Connect stream and the Stream calls it opens on the same grpc-js client (one HTTP/2 connection). */
class GrpcAgentConnection implements AgentConnection, AgentConnectionTestHooks {
  private readonly registry = new AgentStreamRegistry();
  private readonly token: Promise<string>;
  readonly closed: Promise<HawserError | undefined>;

  constructor(
    private readonly client: grpc.Client,
    call: grpc.ClientDuplexStream<Buffer, Inbound<ConnectResponse>>,
    readonly control: GrpcChannel<ConnectResponse, ConnectRequest>,
    private readonly target: string,
  ) {
    this.closed = control.closed;
    this.token = new Promise((resolve, reject) => {
      call.once('metadata', (metadata: grpc.Metadata) => {
        const token = metadata.get(sessionKey)[0];
        if (typeof token === 'string' && token !== '') resolve(token);
        else reject(new HawserError(ErrorCode.StreamUnbound, `the hub at ${target} named no session: it serves no request streams`));
      });
      void control.closed.then((e) => reject(sessionEnded(e)));
    });
    this.token.catch(() => undefined);
    void control.closed.then((e) => this.registry.end(e));
  }

  get openStreams(): number {
    return this.registry.openStreams;
  }

  async openStream(kind: string, signal?: AbortSignal, options: AgentOpenStreamOptions = {}): Promise<ByteStream> {
    const id = this.registry.check(kind, options.requestId, signal);
    return this.openAs(await this.sessionToken(signal), kind, id, signal, options.early ?? false);
  }

  /** The session token, once the hub's response headers brought it. */
  sessionToken(signal?: AbortSignal): Promise<string> {
    if (!signal) return this.token;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortError(signal, 'waiting for the session'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.token.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async openStreamNaming(sessionToken: string, kind: string, signal?: AbortSignal): Promise<ByteStream> {
    return this.openAs(sessionToken, kind, this.registry.check(kind, undefined, signal), signal);
  }

  private openAs(token: string, kind: string, id: string, signal: AbortSignal | undefined, early = false): Promise<ByteStream> {
    const ended = this.registry.endedWith;
    if (ended) return Promise.reject(sessionEnded(ended));
    const metadata = new grpc.Metadata();
    metadata.set(sessionKey, token);
    metadata.set(streamKindKey, kind);
    metadata.set(streamIdKey, id);
    let call: grpc.ClientDuplexStream<Buffer, DecodedChunk>;
    try {
      call = this.client.makeBidiStreamRequest<Buffer, DecodedChunk>(streamPath, passThrough, decodeStreamChunk, metadata, {
        waitForReady: false,
      } as grpc.CallOptions);
    } catch (err) {
      return Promise.reject(new HawserError(ErrorCode.SessionEnded, `cannot open stream ${kind}/${id}: ${(err as Error).message}`));
    }
    const stream = new GrpcStream(kind, id, signal, call, undefined, this.target);
    let isTaken = false;
    const taken = new Promise<ByteStream>((resolve, reject) => {
      call.on('metadata', (m: grpc.Metadata) => {
        if (m.get(streamAcceptedKey)[0] !== 'accepted') return;
        isTaken = true;
        resolve(stream);
      });
      void stream.closed.then((e) => {
        if (!isTaken) reject(e ?? new HawserError(ErrorCode.StreamRefused, `the hub ended stream ${kind}/${id} without taking it`));
      });
    });
    this.registry.track(stream);
    stream.start(signal);
    if (early) {
      // grpc-js sends what is written after the call's headers; a refusal fails the stream.
      taken.catch(() => undefined);
      return stream.isDone ? taken : Promise.resolve(stream);
    }
    return taken;
  }

  close(error?: HawserError): void {
    // Streams first, then the control stream: the hub sees each stream reset before the session ends.
    this.registry.end(error);
    this.control.close(error);
  }
}

export interface GrpcServerOptions {
  /** host:port; port 0 picks a free one. */
  address: string;
  tls: { keyPem: string; certPem: string } | 'insecure';
  maxFrameBytes?: number;
  /** Server-side pings find dead agents even when no heartbeat is due. */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  /** A TLS handshake not finished in this long is dropped (Node's default holds it 120 s). */
  tlsHandshakeTimeoutMs?: number;
  /** HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams?: number;
}

export const defaultTlsHandshakeTimeoutMs = 10_000;
export const defaultMaxConcurrentStreams = 100;

/**
 * TLS server credentials with a bound on the handshake. grpc-js's createSsl
 * has no way to set Node's handshakeTimeout; its ServerCredentials passes
 * the constructor options given here to http2.createSecureServer.
 */
class BoundedHandshakeCredentials extends grpc.ServerCredentials {
  constructor(tls: { keyPem: string; certPem: string }, handshakeTimeoutMs: number, maxConcurrentStreams: number) {
    super(
      {
        handshakeTimeout: handshakeTimeoutMs,
        requestCert: false,
        // No Nagle: a small frame (an OpenStream, a response's last bytes) goes out now, not
        // after the peer's delayed ACK of the one before it (up to 40 ms per request).
        noDelay: true,
        // These replace grpc-js's own settings (which carry only the stream bound): keep it.
        // Large DATA frames from the agent: a 256 KB message arrives in a few frames, not 16 of
        // 16 KB, so the hub takes it in fewer reads, callbacks and buffers.
        settings: { maxConcurrentStreams, initialWindowSize: streamWindowBytes, maxFrameSize: maxDataFrameBytes },
      } as ConstructorParameters<typeof grpc.ServerCredentials>[0],
      { cert: [Buffer.from(tls.certPem)], key: [Buffer.from(tls.keyPem)] },
    );
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
  /** grpc-js passes this to each TLS server's setSecureContext: new handshakes only. */
  replaceCertificate(tls: { keyPem: string; certPem: string }): void {
    this.updateSecureContextOptions({ cert: [Buffer.from(tls.certPem)], key: [Buffer.from(tls.keyPem)] });
  }
}

/** Per call: where a frame refused by grpc-js's own size limit should go, and what the transport knows of the call. */
interface OversizeHook {
  deliver?: (error: HawserError) => void;
  fired: boolean;
  /** Its HTTP/2 connection (local and remote address and port), when the socket is still there. */
  connection: string | undefined;
  /** Resets the HTTP/2 stream now (false when grpc-js no longer exposes it). */
  reset(): boolean;
}

/** Identifies a live TCP connection: no two share local and remote address and port. */
function connectionKeyOf(info: ReturnType<grpc.ServerInterceptingCallInterface['getConnectionInfo']>): string | undefined {
  const { localAddress, localPort, remoteAddress, remotePort } = info;
  if (!localAddress || !localPort || !remoteAddress || !remotePort) return undefined;
  return `${localAddress}:${localPort}|${remoteAddress}:${remotePort}`;
}

export class GrpcServerTransport implements ConnectionServerTransport {
  private credentials: BoundedHandshakeCredentials | undefined;

  constructor(private readonly options: GrpcServerOptions) {}

  /**
   * Serves a new certificate to every handshake from now on, without a
   * restart: grpc-js hands it to the TLS server's setSecureContext. Live
   * connections keep their TLS session (no reconnect storm).
   */
  updateServingCertificate(tls: { keyPem: string; certPem: string }): void {
    if (!this.credentials) {
      throw new HawserError(ErrorCode.InvalidOption, 'the tunnel is not listening with TLS: there is no certificate to replace');
    }
    this.credentials.replaceCertificate(tls);
  }

  listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener> {
    return this.listenConnections((connection) => onChannel(connection.control));
  }

  async listenConnections(onConnection: (connection: HubConnection) => void, events: ServerTransportEvents = {}): Promise<TunnelListener> {
    const maxFrameBytes = this.options.maxFrameBytes ?? defaultMaxFrameBytes;
    const hooks = new WeakMap<object, OversizeHook>();
    /** HTTP/2 sessions whose connection window is raised already. */
    const widened = new WeakSet<object>();
    const oversized = (what: string, limit: number, details: string) =>
      new HawserError(ErrorCode.OversizedFrame, `${what} exceeds the limit of ${limit} bytes (${details})`);
    // grpc-js refuses a frame over its own receive limit with a bare RESOURCE_EXHAUSTED and
    // tells the handler nothing. Catch that status on the way out and hand the hub the refusal
    // instead, so every oversized frame gets our code, a Goodbye, a log line and a count.
    const oversizeInterceptor: grpc.ServerInterceptor = (method, call) => {
      // The base call keeps its HTTP/2 stream as `stream` and its message decoder as
      // `decoder` (grpc-js 1.14): a reset needs the one, a tighter size limit the other.
      const internals = call as unknown as {
        stream?: { close?(code: number): void; session?: { setLocalWindowSize?(size: number): void } };
        decoder?: { maxReadMessageLength?: number };
      };
      const http2Stream = internals.stream;
      const session = http2Stream?.session;
      if (session && !widened.has(session)) {
        widened.add(session);
        try {
          session.setLocalWindowSize?.(connectionWindowBytes);
        } catch {
          // A session already closing: nothing to widen.
        }
      }
      const isStream = method.path === streamPath;
      // A stream message holds one chunk: refused from its length prefix when larger, so a
      // reader that paused never has grpc-js buffer big messages on its behalf.
      if (isStream && typeof internals.decoder?.maxReadMessageLength === 'number') {
        internals.decoder.maxReadMessageLength = maxStreamMessageBytes;
      }
      const [what, limit] = isStream ? ['agent stream message', maxStreamMessageBytes] : ['agent frame', maxFrameBytes];
      const hook: OversizeHook = {
        fired: false,
        connection: connectionKeyOf(call.getConnectionInfo()),
        reset: () => {
          if (typeof http2Stream?.close !== 'function') return false;
          http2Stream.close(http2Constants.NGHTTP2_CANCEL);
          return true;
        },
      };
      const wrapper = new grpc.ServerInterceptingCall(call);
      hooks.set(wrapper, hook);
      // The base call sends the size refusal on itself: patch this call's own method.
      const sendStatus = call.sendStatus.bind(call);
      call.sendStatus = (status) => {
        const ours = status.metadata?.get(errorCodeKey).length;
        if (status.code === grpc.status.RESOURCE_EXHAUSTED && !ours) {
          if (hook.fired) return; // later data frames of the same message: already being refused
          hook.fired = true;
          const error = oversized(what, limit, status.details);
          if (hook.deliver) return hook.deliver(error);
          return sendStatus(statusFromHawserError(error));
        }
        return sendStatus(status);
      };
      return wrapper;
    };
    const server = new grpc.Server({
      // Frames up to twice our limit reach the codec, which names the problem;
      // larger ones grpc-js refuses from their length prefix, without buffering
      // them, and the interceptor above turns that into the same refusal.
      'grpc.max_receive_message_length': maxFrameBytes * 2,
      'grpc.keepalive_time_ms': this.options.keepaliveTimeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': this.options.keepaliveTimeoutMs ?? 10_000,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_concurrent_streams': this.options.maxConcurrentStreams ?? defaultMaxConcurrentStreams,
      interceptors: [oversizeInterceptor],
    });
    const inCodec = agentFrameCodec(maxFrameBytes);
    const outCodec = hubFrameCodec();
    const open = new Set<GrpcChannel<ConnectRequest, ConnectResponse>>();
    /** Live sessions by token. */
    const sessions = new Map<string, GrpcHubConnection>();
    const definition: grpc.ServiceDefinition = {
      connect: {
        path: connectPath,
        requestStream: true,
        responseStream: true,
        requestSerialize: () => {
          throw new Error('the hub never serializes agent frames');
        },
        requestDeserialize: (b: Buffer) => inCodec.decode(b),
        responseSerialize: passThrough,
        responseDeserialize: (b: Buffer) => outCodec.decode(b),
        originalName: 'connect',
      } as unknown as grpc.MethodDefinition<unknown, unknown>,
      stream: {
        path: streamPath,
        requestStream: true,
        responseStream: true,
        requestSerialize: () => {
          throw new Error('the hub never serializes agent chunks');
        },
        requestDeserialize: decodeStreamChunk,
        responseSerialize: passThrough,
        responseDeserialize: decodeStreamChunk,
        originalName: 'stream',
      } as unknown as grpc.MethodDefinition<unknown, unknown>,
    };
    server.addService(definition, {
      connect: (call: grpc.ServerDuplexStream<Inbound<ConnectRequest>, Buffer>) => {
        const channel = new GrpcChannel<ConnectRequest, ConnectResponse>(call, outCodec, call.getPeer(), true);
        // ServerDuplexStream keeps the intercepted call it wraps as `call`.
        const hook = hooks.get((call as unknown as { call: object }).call);
        if (hook) hook.deliver = (error) => channel.injectInbound({ ok: false, error, bytes: 0 });
        open.add(channel);
        void channel.closed.then(() => open.delete(channel));
        // The session's token goes out in the response headers at once; it is worth
        // nothing off this HTTP/2 connection, nor before the session accepts streams.
        const token = randomBytes(16).toString('base64url');
        const connection = new GrpcHubConnection(channel, hook?.connection, token);
        sessions.set(token, connection);
        void channel.closed.then(() => sessions.delete(token));
        const headers = new grpc.Metadata();
        headers.set(sessionKey, token);
        call.sendMetadata(headers);
        onConnection(connection);
      },
      stream: (call: grpc.ServerDuplexStream<DecodedChunk, Buffer>) => {
        const hook = hooks.get((call as unknown as { call: object }).call);
        const header = (key: string): string => {
          const value = call.metadata.get(key)[0];
          return typeof value === 'string' ? value : '';
        };
        const kind = header(streamKindKey);
        const id = header(streamIdKey);
        const refuse = (error: HawserError) => {
          events.streamRefused?.(error, call.getPeer());
          call.emit('error', statusFromHawserError(error));
        };
        const session = sessions.get(header(sessionKey));
        // Bound to a session only on the HTTP/2 connection that session arrived on: a token
        // copied to another connection (another agent, a replay) is worth nothing.
        if (!session || !hook?.connection || session.connectionKey !== hook.connection) {
          return refuse(new HawserError(ErrorCode.StreamUnbound, 'the stream names no live session of its connection'));
        }
        const admission = session.registry.admit(kind, id);
        if (!admission.ok) return refuse(admission.error);
        const accepted = new grpc.Metadata();
        accepted.set(streamAcceptedKey, 'accepted');
        call.sendMetadata(accepted);
        const stream = new GrpcStream(kind, id, admission.signal, call, { reset: () => hook.reset() }, call.getPeer());
        admission.deliver(stream);
        stream.start(admission.signal);
      },
    });
    const secure =
      this.options.tls === 'insecure'
        ? undefined
        : new BoundedHandshakeCredentials(
            this.options.tls,
            this.options.tlsHandshakeTimeoutMs ?? defaultTlsHandshakeTimeoutMs,
            this.options.maxConcurrentStreams ?? defaultMaxConcurrentStreams,
          );
    this.credentials = secure;
    const credentials = secure ?? grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(this.options.address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    const host = this.options.address.slice(0, this.options.address.lastIndexOf(':'));
    return {
      address: `${host}:${port}`,
      close: async (graceMs = 1_000) => {
        for (const c of open) c.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down', { retryAfterMs: 0 }));
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, graceMs);
          force.unref();
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      },
    };
  }
}

/** The agent's TLS session to resume on its next dial, one per transport (so per hub address). */
export interface TlsSessionCache {
  session: Buffer | undefined;
  /** Handshakes that resumed the cached session (metrics, tests). */
  resumed: number;
  full: number;
}

/**
 * The agent's TLS credentials: grpc-js's own createSsl, plus two things it
 * lacks. (1) Session resumption: the ticket the hub sent on the last
 * connection is offered on the next dial (TLS 1.3 PSK), which spares the hub
 * a signature and the link the certificate chain. A ticket is only good with
 * the hub that issued it; any other server (another certificate, another
 * process) cannot use it and gets a full handshake, verified against the
 * trusted CAs as always. (2) A closed channel's connector refuses to connect:
 * grpc-js keeps a subchannel that failed to connect retrying once after its
 * backoff even when its channel was closed, and on a link that came back that
 * retry opened a TLS connection nobody used and nobody closed.
 */
class AgentTlsCredentials extends grpc.ChannelCredentials {
  private readonly secureContext: SecureContext;

  constructor(
    caPem: string | undefined,
    private readonly serverNameOverride: string | undefined,
    private readonly cache: TlsSessionCache,
  ) {
    super();
    this.secureContext = createSecureContext({ ca: caPem ?? [...rootCertificates] });
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(channelTarget: { path: string }, options: grpc.ChannelOptions, callCredentials?: grpc.CallCredentials): grpc.experimental.SecureConnector {
    // Through an HTTP CONNECT proxy (https_proxy), grpc-js names the real target here.
    const connectTarget = options['grpc.http_connect_target'] as string | undefined;
    const host = hostOf(connectTarget ? connectTarget.replace(/^dns:(\/\/[^/]*\/)?/, '') : channelTarget.path);
    const servername = this.serverNameOverride ?? host;
    const cache = this.cache;
    const secureContext = this.secureContext;
    let destroyed = false;
    return {
      connect(socket: Socket) {
        if (destroyed) {
          socket.destroy();
          return Promise.reject(new Error('the channel was closed'));
        }
        return new Promise((resolve, reject) => {
          const tlsSocket = tlsConnect(
            {
              socket,
              secureContext,
              // An IP address is no SNI name; the certificate check still covers it.
              ...(isIp(servername) ? {} : { servername }),
              ALPNProtocols: ['h2'],
              ...(cache.session ? { session: cache.session } : {}),
              checkServerIdentity: (_host, cert) => checkServerIdentity(servername, cert),
            },
            () => {
              if (!tlsSocket.authorized) {
                tlsSocket.destroy();
                reject(tlsSocket.authorizationError);
                return;
              }
              if (tlsSocket.isSessionReused()) cache.resumed++;
              else cache.full++;
              resolve({ socket: tlsSocket, secure: true });
            },
          );
          tlsSocket.on('session', (session: Buffer) => {
            cache.session = session;
          });
          tlsSocket.on('error', (error) => {
            // A handshake that failed must not be retried with the same ticket.
            cache.session = undefined;
            reject(error);
          });
        });
      },
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials ?? grpc.credentials.createEmpty(),
      destroy() {
        destroyed = true;
      },
    };
  }
}

function hostOf(target: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(target);
  if (bracketed) return bracketed[1]!;
  const i = target.lastIndexOf(':');
  return i > 0 && target.indexOf(':') === i ? target.slice(0, i) : target;
}

function isIp(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(':');
}

export interface GrpcClientOptions {
  /** host:port of the hub. */
  target: string;
  /** caPem: the CA to trust; without it the system roots. */
  tls: { caPem?: string; serverNameOverride?: string } | 'insecure';
  maxFrameBytes?: number;
  /** HTTP/2 ping period: short enough to keep NAT mappings open. */
  keepaliveTimeMs?: number;
  /** A ping unanswered this long means the hub is gone. */
  keepaliveTimeoutMs?: number;
  /** Tests only: keep the HTTP/2 connection open after its session ended (a hostile agent reusing it). */
  keepConnectionAfterSession?: boolean;
}

export class GrpcClientTransport implements ConnectionClientTransport {
  private client: grpc.Client | undefined;
  private credentials: grpc.ChannelCredentials;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly inCodec: FrameCodec<ConnectResponse>;
  private readonly outCodec = agentFrameCodec();
  /** The TLS session offered on the next dial, and how many handshakes resumed one. */
  readonly tlsSessions: TlsSessionCache = { session: undefined, resumed: 0, full: 0 };

  constructor(readonly options: GrpcClientOptions) {
    const maxFrameBytes = options.maxFrameBytes ?? defaultMaxFrameBytes;
    this.inCodec = hubFrameCodec(maxFrameBytes);
    this.credentials = options.tls === 'insecure' ? grpc.credentials.createInsecure() : this.tlsCredentials(options.tls.caPem);
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': maxFrameBytes * 2,
      'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 20_000,
      'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Our own reconnect loop owns backoff; the channel should not add its own on top.
      // Each dial is a fresh channel, so grpc-js's retry of a failed connection is never
      // wanted: an hour keeps a closed channel's leftover subchannel quiet (see AgentTlsCredentials).
      'grpc.initial_reconnect_backoff_ms': 3_600_000,
      'grpc.max_reconnect_backoff_ms': 3_600_000,
      'grpc.enable_retries': 0,
      // Each transport dials its own HTTP/2 connection, never one shared through grpc-js's
      // global pool with another transport to the same hub (another agent in this process).
      'grpc.use_local_subchannel_pool': 1,
      // grpc-js takes this as both each stream's window and the connection's: a paused
      // stream keeps its unread bytes out of the connection window, so it must be
      // several streams' worth, or one slow upload would hold back heartbeat acks.
      'grpc-node.flow_control_window': agentWindowBytes,
    };
    if (options.tls !== 'insecure' && options.tls.serverNameOverride) {
      channelOptions['grpc.ssl_target_name_override'] = options.tls.serverNameOverride;
      channelOptions['grpc.default_authority'] = options.tls.serverNameOverride;
    }
    this.channelOptions = channelOptions;
  }

  /**
   * Trusts these CAs as well (the hub's pushed bundle) from the next dial on:
   * with caPem, or with the system roots when no caPem was given. The open
   * connection keeps its TLS session.
   */
  setExtraTrustedCas(caPems: readonly string[]): void {
    if (this.options.tls === 'insecure') return;
    const base = this.options.tls.caPem ? [this.options.tls.caPem] : [...rootCertificates];
    // A session verified under the old trust must not carry over into the new one.
    this.tlsSessions.session = undefined;
    this.credentials = this.tlsCredentials([...base, ...caPems].map((p) => p.trimEnd()).join('\n') + '\n');
  }

  private tlsCredentials(caPem: string | undefined): grpc.ChannelCredentials {
    const override = this.options.tls === 'insecure' ? undefined : this.options.tls.serverNameOverride;
    return new AgentTlsCredentials(caPem, override || undefined, this.tlsSessions);
  }

  /**
   * Each dial gets a fresh HTTP/2 connection: after a failure the old one may
   * be half dead (a stalled NAT or proxy) and must not carry the new stream.
   */
  private freshClient(): grpc.Client {
    this.client?.close();
    this.client = new grpc.Client(this.options.target, this.credentials, this.channelOptions);
    return this.client;
  }

  open(): AgentChannel {
    return this.connect().control;
  }

  connect(): AgentConnection & AgentConnectionTestHooks {
    const client = this.freshClient();
    const call = client.makeBidiStreamRequest<Buffer, Inbound<ConnectResponse>>(
      connectPath,
      passThrough,
      (b) => this.inCodec.decode(b),
      new grpc.Metadata(),
      // Fail fast when the hub cannot be reached instead of queueing the call.
      { waitForReady: false } as grpc.CallOptions,
    );
    const control = new GrpcChannel<ConnectResponse, ConnectRequest>(call, this.outCodec, this.options.target, false);
    // The session is over when its control stream is: close its client now, not at the next
    // dial. An abandoned grpc-js channel keeps redialling in the background (its own
    // 100 ms..1 s backoff) while the agent backs off, and on a link that came back would
    // open a TCP+TLS connection nobody uses (about 2 KB) just before the agent's own dial.
    void control.closed.then(() => {
      if (this.options.keepConnectionAfterSession) return;
      client.close();
      if (this.client === client) this.client = undefined;
    });
    return new GrpcAgentConnection(client, call, control, this.options.target);
  }

  /**
   * Raw access for tests that must send bytes no well-behaved agent would.
   * `sameConnection` opens the stream on the current HTTP/2 connection (a
   * fuzzer opens many streams; a TLS handshake each would measure TLS).
   */
  openRaw(options: { sameConnection?: boolean } = {}): grpc.ClientDuplexStream<Buffer, Buffer> {
    const client = options.sameConnection && this.client ? this.client : this.freshClient();
    return client.makeBidiStreamRequest<Buffer, Buffer>(connectPath, passThrough, passThrough, new grpc.Metadata());
  }

  /**
   * Raw access for tests: a Stream call on the current HTTP/2 connection
   * with the given request headers (an attacker's choice of session, kind, id).
   */
  openRawStream(headers: Record<string, string>): grpc.ClientDuplexStream<Buffer, Buffer> {
    if (!this.client) throw new HawserError(ErrorCode.Unavailable, 'no connection: connect() first');
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
    return this.client.makeBidiStreamRequest<Buffer, Buffer>(streamPath, passThrough, passThrough, metadata);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}
