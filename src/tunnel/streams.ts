import { ErrorCode, HawserError } from './errors.js';
import type { ByteStream, HubChannel, HubConnection, OpenStreamOptions, StreamAcceptor, StreamRequest } from './transport.js';

// What the gRPC and in-memory connections share: a stream's life cycle, its
// bounded inbound buffer, and each side's registry of the streams it owns.

/** Largest chunk one message carries; bigger writes are split (views, not copies). */
export const maxStreamChunkBytes = 256 * 1024;
/** Bytes a reader holds before it stops taking more (the transport's flow control then stalls the writer). */
export const streamReadBufferBytes = 1024 * 1024;
/** Bytes a writer may have handed over but not yet sent before write() waits. */
export const streamWriteBufferBytes = 1024 * 1024;

const kindPattern = /^[a-z][a-z0-9-]{0,31}$/;
const idPattern = /^[A-Za-z0-9_-]{1,64}$/;
/** Ids the hub gives the streams it requests; the agent's own never start so. */
const hubIdPrefix = 'h';

function quoted(value: string): string {
  return value.length <= 64 ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, 64))}… (${value.length} chars)`;
}

export function streamKindError(kind: string): HawserError | undefined {
  return kindPattern.test(kind)
    ? undefined
    : new HawserError(ErrorCode.StreamRefused, `stream kind ${quoted(kind)} is not a lowercase name of at most 32 characters`);
}

export function streamIdError(id: string): HawserError | undefined {
  return idPattern.test(id)
    ? undefined
    : new HawserError(ErrorCode.StreamRefused, `stream id ${quoted(id)} is not 1 to 64 letters, digits, '-' or '_'`);
}

/** Why a signal aborted, as a code: a deadline (AbortSignal.timeout), a HawserError given as the reason, or a cancel. */
export function abortError(signal: AbortSignal, what: string): HawserError {
  const reason: unknown = signal.reason;
  if (reason instanceof HawserError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new HawserError(ErrorCode.DeadlineExceeded, `${what}: deadline passed`, { cause: reason });
  }
  return new HawserError(ErrorCode.Cancelled, `${what}: cancelled`, { cause: reason });
}

export function sessionEnded(reason: HawserError | undefined): HawserError {
  return new HawserError(ErrorCode.SessionEnded, reason ? `session ended: ${reason.code}: ${reason.message}` : 'session ended');
}

/**
 * Inbound chunks, bounded in bytes: above `limitBytes` it asks its producer to
 * pause, and to resume once the reader took it down to half. A failure drops
 * what is buffered: the reader learns at once.
 */
export class ChunkQueue {
  private items: Uint8Array[] = [];
  private head = 0;
  private buffered = 0;
  private paused = false;
  private ended = false;
  private failure: HawserError | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly limitBytes: number,
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): void {
    if (this.ended || this.failure) return;
    this.items.push(chunk);
    this.buffered += chunk.byteLength;
    if (!this.paused && this.buffered > this.limitBytes) {
      this.paused = true;
      this.pause();
    }
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(error: HawserError): void {
    if (this.failure || this.ended) return;
    this.failure = error;
    this.items = [];
    this.head = 0;
    this.buffered = 0;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.head < this.items.length) {
        const chunk = this.items[this.head]!;
        this.items[this.head++] = undefined as unknown as Uint8Array;
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        this.buffered -= chunk.byteLength;
        if (this.paused && this.buffered <= this.limitBytes / 2) {
          this.paused = false;
          this.resume();
        }
        yield chunk;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/**
 * A ByteStream's life cycle over any transport: two halves, each ended on its
 * own; done when both are, or at the first failure. Subclasses move the bytes.
 */
export abstract class StreamCore implements ByteStream {
  protected readonly inbound: ChunkQueue;
  private localEnded = false;
  private peerEnded = false;
  private done = false;
  private failure: HawserError | undefined;
  private resolveClosed!: (e: HawserError | undefined) => void;
  private detachSignal: () => void = () => {};
  private reading = false;
  readonly closed: Promise<HawserError | undefined>;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly kind: string,
    readonly id: string,
    signal: AbortSignal | undefined,
    readBufferBytes: number,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.inbound = new ChunkQueue(readBufferBytes, () => this.pauseInbound(), () => this.resumeInbound());
    if (signal) this.listenTo(signal);
  }

  private listenTo(signal: AbortSignal): void {
    const onAbort = () => this.abort(abortError(signal, `stream ${this.describe()}`));
    signal.addEventListener('abort', onAbort, { once: true });
    this.detachSignal = () => signal.removeEventListener('abort', onAbort);
  }

  /**
   * Puts a stream opened without a signal (a pooled one) under `signal` from
   * now on: it aborts the stream, at once when it has fired already.
   */
  bindSignal(signal: AbortSignal | undefined): void {
    if (!signal || this.done) return;
    this.detachSignal();
    this.listenTo(signal);
    this.checkSignal(signal);
  }

  /** Called once the subclass is wired: a signal that aborted already ends the stream now. */
  protected checkSignal(signal: AbortSignal | undefined): void {
    if (signal?.aborted) this.abort(abortError(signal, `stream ${this.describe()}`));
  }

  describe(): string {
    return `${this.kind}/${this.id}`;
  }

  get isDone(): boolean {
    return this.done;
  }

  /** Hands one chunk (at most maxStreamChunkBytes) to the transport; resolves when there is room for more. */
  protected abstract transmit(chunk: Uint8Array): Promise<void>;
  /** Tells the peer our half is over (after everything written). */
  protected abstract transmitEnd(): void;
  /** Tells the peer the stream is cancelled. */
  protected abstract transmitAbort(reason: HawserError): void;
  /** Flow control: stop / go on taking inbound bytes from the transport. */
  protected abstract pauseInbound(): void;
  protected abstract resumeInbound(): void;
  /** Both halves are over: the subclass completes the call, then calls finish(). */
  protected bothEnded(): void {
    this.finish(undefined);
  }

  async write(chunk: Uint8Array): Promise<void> {
    for (let offset = 0; ; offset += maxStreamChunkBytes) {
      this.assertWritable();
      const piece = offset === 0 && chunk.byteLength <= maxStreamChunkBytes ? chunk : chunk.subarray(offset, offset + maxStreamChunkBytes);
      this.bytesOut += piece.byteLength;
      await this.transmit(piece);
      if (offset + maxStreamChunkBytes >= chunk.byteLength) return;
    }
  }

  private assertWritable(): void {
    if (this.failure) throw this.failure;
    if (this.done || this.localEnded) {
      throw new HawserError(ErrorCode.Unavailable, `stream ${this.describe()} is ended: nothing more can be written`);
    }
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.localEnded || this.done) return;
    this.localEnded = true;
    this.transmitEnd();
    if (this.peerEnded) this.bothEnded();
  }

  chunks(): AsyncIterable<Uint8Array> {
    if (this.reading) throw new HawserError(ErrorCode.Internal, `stream ${this.describe()} has a reader already`);
    this.reading = true;
    return this.inbound;
  }

  abort(reason?: HawserError): void {
    if (this.done) return;
    const error = reason ?? new HawserError(ErrorCode.Cancelled, `stream ${this.describe()} cancelled`);
    this.transmitAbort(error);
    this.fail(error);
  }

  /** Inbound data from the peer. */
  protected received(chunk: Uint8Array): void {
    if (this.done || this.peerEnded) return;
    this.bytesIn += chunk.byteLength;
    this.inbound.push(chunk);
  }

  /** The peer ended its half. */
  protected receivedEnd(): void {
    if (this.done || this.peerEnded) return;
    this.peerEnded = true;
    this.inbound.end();
    if (this.localEnded) this.bothEnded();
  }

  /** Why the stream failed, once it did. */
  protected get failedWith(): HawserError | undefined {
    return this.failure;
  }

  protected get hasEnded(): { local: boolean; peer: boolean } {
    return { local: this.localEnded, peer: this.peerEnded };
  }

  /** The stream failed (the peer aborted it, the transport broke, the session ended). */
  protected fail(error: HawserError): void {
    if (this.done) return;
    this.failure = error;
    this.inbound.fail(error);
    this.finish(error);
  }

  protected finish(error: HawserError | undefined): void {
    if (this.done) return;
    this.done = true;
    if (!error) this.inbound.end();
    this.detachSignal();
    this.onFinish(error);
    this.resolveClosed(error);
  }

  /** For subclasses that hold waiters (a writer waiting for room). */
  protected onFinish(_error: HawserError | undefined): void {}
}

function toError(err: unknown): HawserError {
  return err instanceof HawserError ? err : new HawserError(ErrorCode.Unavailable, (err as Error).message ?? String(err));
}

/** Writers waiting for room, released all at once (room) or rejected (failure). */
export class RoomWaiters {
  private waiters: Array<{ resolve: () => void; reject: (e: HawserError) => void }> = [];

  wait(): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
  }

  reject(error: HawserError): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(error);
  }
}

interface PendingRequest {
  kind: string;
  signal: AbortSignal | undefined;
  resolve(stream: ByteStream): void;
  reject(error: HawserError): void;
}

/** The outcome of admitting a stream the agent opened: refused, or taken with the signal that governs it. */
export type Admission =
  | { readonly ok: false; readonly error: HawserError }
  | { readonly ok: true; readonly signal: AbortSignal | undefined; deliver(stream: StreamCore): void };

/**
 * The hub's side of one connection's streams: which it takes, the ones it
 * asked for, and the ones open. Owns them: end() aborts every one.
 */
export class HubStreamRegistry {
  private acceptor: StreamAcceptor | undefined;
  private readonly live = new Map<string, StreamCore>();
  private readonly pending = new Map<string, PendingRequest>();
  /** Streams the agent opened ahead, by kind, oldest first: each waits to carry one request. */
  private readonly idle = new Map<string, StreamCore[]>();
  private idleCount = 0;
  private nextId = 1;
  private ended: HawserError | undefined;

  /** Streams carrying something now: the idle pooled ones are not counted. */
  get openStreams(): number {
    return this.live.size - this.idleCount;
  }

  /** Streams the agent opened ahead that wait for a request. */
  get pooledStreams(): number {
    return this.idleCount;
  }

  accept(acceptor: StreamAcceptor): void {
    if (!this.ended) this.acceptor = acceptor;
  }

  admit(kind: string, id: string): Admission {
    const refuse = (error: HawserError): Admission => ({ ok: false, error });
    if (this.ended) return refuse(sessionEnded(this.ended));
    const acceptor = this.acceptor;
    if (!acceptor) return refuse(new HawserError(ErrorCode.StreamRefused, `stream ${quoted(kind)} before the session was authenticated`));
    const bad = streamKindError(kind) ?? streamIdError(id);
    if (bad) return refuse(bad);
    if (this.live.has(id)) return refuse(new HawserError(ErrorCode.StreamRefused, `stream id ${quoted(id)} is already open in this session`));
    if (id.startsWith(hubIdPrefix)) {
      const request = this.pending.get(id);
      if (!request) return refuse(new HawserError(ErrorCode.StreamRefused, `the hub asked for no stream ${quoted(id)} (or no longer waits for it)`));
      if (request.kind !== kind) {
        return refuse(new HawserError(ErrorCode.StreamRefused, `stream ${quoted(id)} was asked for as kind ${quoted(request.kind)}, not ${quoted(kind)}`));
      }
      this.pending.delete(id);
      return { ok: true, signal: request.signal, deliver: (stream) => (this.track(stream), request.resolve(stream)) };
    }
    const poolLimit = acceptor.pools?.[kind];
    if (poolLimit !== undefined) {
      const waiting = this.idle.get(kind)?.length ?? 0;
      if (waiting >= poolLimit) {
        return refuse(new HawserError(ErrorCode.StreamRefused, `the hub holds ${waiting} idle streams of kind ${quoted(kind)} already, its limit`));
      }
      return { ok: true, signal: undefined, deliver: (stream) => (this.track(stream), this.pool(stream)) };
    }
    const onStream = acceptor.onStream?.bind(acceptor);
    if (!onStream) return refuse(new HawserError(ErrorCode.StreamRefused, `the hub takes no stream of kind ${quoted(kind)} that it did not ask for`));
    return { ok: true, signal: undefined, deliver: (stream) => (this.track(stream), onStream(stream)) };
  }

  private track(stream: StreamCore): void {
    if (stream.isDone) return;
    this.live.set(stream.id, stream);
    void stream.closed.then(() => {
      if (this.live.get(stream.id) === stream) this.live.delete(stream.id);
    });
  }

  /** Holds a stream the agent opened ahead until a request takes it; one that ends meanwhile leaves the pool. */
  private pool(stream: StreamCore): void {
    if (stream.isDone) return;
    const queue = this.idle.get(stream.kind) ?? [];
    this.idle.set(stream.kind, queue);
    queue.push(stream);
    this.idleCount++;
    void stream.closed.then(() => this.unpool(stream));
  }

  private unpool(stream: StreamCore): boolean {
    const queue = this.idle.get(stream.kind);
    const at = queue?.indexOf(stream) ?? -1;
    if (at < 0) return false;
    queue!.splice(at, 1);
    this.idleCount--;
    return true;
  }

  /**
   * An idle pooled stream of this kind, now under `signal`, with `first` written
   * on it as its first bytes; undefined when there is none (or none still alive).
   */
  private async takePooled(kind: string, signal: AbortSignal | undefined, first: Uint8Array | undefined): Promise<ByteStream | undefined> {
    for (;;) {
      const stream = this.idle.get(kind)?.[0];
      if (!stream) return undefined;
      this.unpool(stream);
      if (stream.isDone) continue;
      stream.bindSignal(signal);
      try {
        if (first) await stream.write(first);
        return stream;
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, `stream ${stream.describe()}`);
        if (this.ended) throw sessionEnded(this.ended);
        // A stream that broke while idle: try the next one.
        stream.abort(toError(err));
      }
    }
  }

  async open(kind: string, signal: AbortSignal | undefined, options: OpenStreamOptions = {}): Promise<ByteStream> {
    if (this.ended) throw sessionEnded(this.ended);
    const acceptor = this.acceptor;
    if (!acceptor) throw new HawserError(ErrorCode.StreamRefused, 'the session is not authenticated yet: it has no streams');
    const bad = streamKindError(kind);
    if (bad) throw bad;
    if (signal?.aborted) throw abortError(signal, `stream ${kind}`);
    // The agent opened one ahead: no announcement, no round trip; the prelude is its first bytes.
    const pooled = await this.takePooled(kind, signal, options.prelude);
    if (pooled) return pooled;
    if (this.ended) throw sessionEnded(this.ended);
    const id = `${hubIdPrefix}${this.nextId++}`;
    let onAbort: (() => void) | undefined;
    const arrived = new Promise<ByteStream>((resolve, reject) => {
      this.pending.set(id, { kind, signal, resolve, reject });
      if (signal) {
        onAbort = () => {
          this.pending.delete(id);
          reject(abortError(signal, `stream ${kind}/${id}`));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    // Handled here too: the signal may reject it while the announcement is still going out.
    arrived.catch(() => undefined);
    try {
      await acceptor.announce({ id, kind, ...(options.prelude ? { prelude: options.prelude } : {}) } satisfies StreamRequest);
      return await arrived;
    } catch (err) {
      this.pending.delete(id);
      throw err;
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The session is over: waiters fail, every open stream is aborted, nothing new is taken. */
  end(reason: HawserError | undefined): void {
    if (this.ended) return;
    this.ended = reason ?? new HawserError(ErrorCode.SessionEnded, 'session ended');
    this.acceptor = undefined;
    const error = sessionEnded(reason);
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
    // Idle pooled streams are live too: aborted with the rest.
    for (const stream of [...this.live.values()]) stream.abort(error);
  }
}

/** The agent's side of its connection's streams: their ids, and closing them all with the session. */
export class AgentStreamRegistry {
  private readonly live = new Set<StreamCore>();
  private nextId = 1;
  private ended: HawserError | undefined;

  get openStreams(): number {
    return this.live.size;
  }

  /** The id for a stream: the hub's request id, or the agent's own ("a1", "a2", ...). Throws why not. */
  check(kind: string, requestId: string | undefined, signal: AbortSignal | undefined): string {
    if (this.ended) throw sessionEnded(this.ended);
    const bad = streamKindError(kind) ?? (requestId === undefined ? undefined : streamIdError(requestId));
    if (bad) throw bad;
    if (signal?.aborted) throw abortError(signal, `stream ${kind}`);
    return requestId ?? `a${this.nextId++}`;
  }

  get endedWith(): HawserError | undefined {
    return this.ended;
  }

  track(stream: StreamCore): void {
    if (this.ended) {
      stream.abort(sessionEnded(this.ended));
      return;
    }
    if (stream.isDone) return;
    this.live.add(stream);
    void stream.closed.then(() => this.live.delete(stream));
  }

  end(reason: HawserError | undefined): void {
    if (this.ended) return;
    this.ended = reason ?? new HawserError(ErrorCode.SessionEnded, 'session ended');
    const error = sessionEnded(reason);
    for (const stream of [...this.live]) stream.abort(error);
  }
}

/** The hub's side of one connection, whatever carries it: its control stream and the streams bound to it. */
export class HubConnectionBase<Control extends HubChannel = HubChannel> implements HubConnection {
  readonly registry = new HubStreamRegistry();
  readonly closed: Promise<HawserError | undefined>;

  constructor(
    readonly control: Control,
    /** The session's secret: a stream naming it is bound to this connection. */
    readonly token: string,
  ) {
    this.closed = control.closed;
    void control.closed.then((e) => this.registry.end(e));
  }

  get peer(): string {
    return this.control.peer;
  }

  get openStreams(): number {
    return this.registry.openStreams;
  }

  get pooledStreams(): number {
    return this.registry.pooledStreams;
  }

  acceptStreams(acceptor: StreamAcceptor): void {
    this.registry.accept(acceptor);
  }

  openStream(kind: string, signal?: AbortSignal, options?: OpenStreamOptions): Promise<ByteStream> {
    return this.registry.open(kind, signal, options);
  }

  close(error?: HawserError): void {
    this.registry.end(error);
    this.control.close(error);
  }
}
