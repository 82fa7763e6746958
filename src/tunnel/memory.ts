import { randomBytes } from 'node:crypto';
import type { ConnectRequest, ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import { agentFrameCodec, hubFrameCodec, type FrameCodec, type Inbound } from './codec.js';
import { ErrorCode, HawserError } from './errors.js';
import { FrameQueue } from './queue.js';
import {
  type Admission,
  AgentStreamRegistry,
  HubConnectionBase,
  RoomWaiters,
  StreamCore,
  sessionEnded,
  streamReadBufferBytes,
} from './streams.js';
import type {
  AgentChannel,
  AgentConnection,
  AgentConnectionTestHooks,
  AgentOpenStreamOptions,
  ByteStream,
  ConnectionClientTransport,
  ConnectionServerTransport,
  FrameChannel,
  HubChannel,
  HubConnection,
  ServerTransportEvents,
  TunnelListener,
} from './transport.js';

// In-process transport: frames still go through the real codec, so size
// limits and malformed-frame handling behave as on the wire.

/** Frames a control stream's reader may leave unread before its writer waits (grpc-js bounds it too). */
const controlWindowFrames = 1024;

class MemoryEnd<In, Out> implements FrameChannel<In, Out> {
  private queue = new FrameQueue<Inbound<In>>(controlWindowFrames, () => this.room.release());
  /** Writers to this end waiting for its reader to take frames. */
  private readonly room = new RoomWaiters();
  private isClosed = false;
  private resolveClosed!: (e: HawserError | undefined) => void;
  readonly closed: Promise<HawserError | undefined>;
  peerEnd!: MemoryEnd<Out, In>;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly peer: string,
    private readonly outCodec: FrameCodec<Out>,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  /** Resolves once the peer has room, as gRPC's send waits for drain. */
  async send(frame: Out): Promise<void> {
    if (this.isClosed) throw new HawserError(ErrorCode.Unavailable, `channel to ${this.peer} is closed`);
    const bytes = this.outCodec.encode(frame);
    this.bytesOut += bytes.length;
    await this.peerEnd.deliverRaw(bytes);
  }

  /** Test hook: hands the peer arbitrary bytes, as a broken client would. */
  sendRaw(bytes: Uint8Array): void {
    this.bytesOut += bytes.byteLength;
    void this.peerEnd.deliverRaw(bytes);
  }

  inCodec!: FrameCodec<In>;

  private deliverRaw(bytes: Uint8Array): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    this.bytesIn += bytes.byteLength;
    // Decoding on a later tick keeps delivery asynchronous, as on a socket.
    return new Promise((resolve) =>
      queueMicrotask(() => {
        if (this.isClosed || this.queue.push(this.inCodec.decode(bytes))) return resolve();
        // Full: the writer waits for the reader (or the end of the stream).
        this.room.wait().then(resolve, resolve);
      }),
    );
  }

  frames(): AsyncIterable<Inbound<In>> {
    return this.queue;
  }

  close(error?: HawserError): void {
    if (this.finish(error)) this.peerEnd.finish(error);
  }

  private finish(error?: HawserError): boolean {
    if (this.isClosed) return false;
    this.isClosed = true;
    queueMicrotask(() => this.queue.end());
    this.room.release();
    this.resolveClosed(error);
    return true;
  }
}

export function memoryChannelPair(
  maxFrameBytes?: number,
): { hub: HubChannel & { sendRaw(b: Uint8Array): void }; agent: AgentChannel & { sendRaw(b: Uint8Array): void } } {
  return memoryEnds(maxFrameBytes);
}

function memoryEnds(maxFrameBytes?: number): {
  hub: MemoryEnd<ConnectRequest, ConnectResponse>;
  agent: MemoryEnd<ConnectResponse, ConnectRequest>;
} {
  const hub = new MemoryEnd<ConnectRequest, ConnectResponse>('memory-agent', hubFrameCodec());
  const agent = new MemoryEnd<ConnectResponse, ConnectRequest>('memory-hub', agentFrameCodec());
  hub.inCodec = agentFrameCodec(maxFrameBytes);
  agent.inCodec = hubFrameCodec(maxFrameBytes);
  hub.peerEnd = agent;
  agent.peerEnd = hub;
  return { hub, agent };
}

/**
 * One end of an in-memory request stream. Like an HTTP/2 stream under
 * flow control: the reader holds at most `windowBytes` it has not read, and
 * past that the writer waits. Chunks are copied, so a writer may reuse its
 * buffer once write() resolved, as on the wire.
 */
class MemoryStream extends StreamCore {
  peer!: MemoryStream;
  private blockedByPeer = false;
  private readonly room = new RoomWaiters();

  constructor(
    kind: string,
    id: string,
    signal: AbortSignal | undefined,
    private readonly side: 'hub' | 'agent',
    windowBytes: number,
  ) {
    super(kind, id, signal, windowBytes);
  }

  start(signal: AbortSignal | undefined): void {
    this.checkSignal(signal);
  }

  protected async transmit(chunk: Uint8Array): Promise<void> {
    // A copy (Buffer#slice would be a view): the writer may reuse its buffer once this resolves.
    this.peer.received(Uint8Array.prototype.slice.call(chunk));
    while (this.blockedByPeer && !this.isDone) await this.room.wait();
  }

  protected transmitEnd(): void {
    this.peer.receivedEnd();
  }

  protected transmitAbort(reason: HawserError): void {
    // As on gRPC: the hub's status carries its code; an agent's reset carries none.
    this.peer.fail(this.side === 'hub' ? reason : new HawserError(ErrorCode.Cancelled, `agent cancelled stream ${this.describe()}`));
  }

  protected pauseInbound(): void {
    this.peer.blockedByPeer = true;
  }

  protected resumeInbound(): void {
    this.peer.blockedByPeer = false;
    this.peer.room.release();
  }

  protected override onFinish(error: HawserError | undefined): void {
    this.room.reject(error ?? new HawserError(ErrorCode.Unavailable, `stream ${this.describe()} is over`));
  }
}

class MemoryHubConnection extends HubConnectionBase<MemoryEnd<ConnectRequest, ConnectResponse>> {
  constructor(
    control: MemoryEnd<ConnectRequest, ConnectResponse>,
    readonly link: object,
    token: string,
  ) {
    super(control, token);
  }
}

class MemoryAgentConnection implements AgentConnection, AgentConnectionTestHooks {
  private readonly registry = new AgentStreamRegistry();
  readonly closed: Promise<HawserError | undefined>;

  constructor(
    readonly control: MemoryEnd<ConnectResponse, ConnectRequest>,
    private readonly link: object,
    private readonly token: string,
    private readonly admit: (link: object, token: string, kind: string, id: string) => Admission,
    private readonly windowBytes: number,
  ) {
    this.closed = control.closed;
    void control.closed.then((e) => this.registry.end(e));
  }

  get openStreams(): number {
    return this.registry.openStreams;
  }

  /** `early` changes nothing here: the in-memory hub takes or refuses a stream at once. */
  async openStream(kind: string, signal?: AbortSignal, options: AgentOpenStreamOptions = {}): Promise<ByteStream> {
    return this.openAs(this.token, kind, this.registry.check(kind, options.requestId, signal), signal);
  }

  sessionToken(): Promise<string> {
    return Promise.resolve(this.token);
  }

  async openStreamNaming(sessionToken: string, kind: string, signal?: AbortSignal): Promise<ByteStream> {
    return this.openAs(sessionToken, kind, this.registry.check(kind, undefined, signal), signal);
  }

  private async openAs(token: string, kind: string, id: string, signal: AbortSignal | undefined): Promise<ByteStream> {
    // A stream opens asynchronously, as on the wire.
    await Promise.resolve();
    const ended = this.registry.endedWith;
    if (ended) throw sessionEnded(ended);
    const admission = this.admit(this.link, token, kind, id);
    if (!admission.ok) throw admission.error;
    const agentEnd = new MemoryStream(kind, id, signal, 'agent', this.windowBytes);
    const hubEnd = new MemoryStream(kind, id, admission.signal, 'hub', this.windowBytes);
    agentEnd.peer = hubEnd;
    hubEnd.peer = agentEnd;
    this.registry.track(agentEnd);
    admission.deliver(hubEnd);
    hubEnd.start(admission.signal);
    agentEnd.start(signal);
    return agentEnd;
  }

  close(error?: HawserError): void {
    // Streams first, then the control stream: the hub sees each stream reset before the session ends.
    this.registry.end(error);
    this.control.close(error);
  }
}

export interface MemoryTransportOptions {
  maxFrameBytes?: number;
  /** Bytes a stream's reader holds unread before its writer waits. */
  streamWindowBytes?: number;
}

/** A server and any number of clients in one process. */
export class MemoryTransport implements ConnectionServerTransport {
  private onConnection: ((connection: HubConnection) => void) | undefined;
  private events: ServerTransportEvents = {};
  private open = new Set<AgentChannel>();
  /** Live sessions by token; each remembers the link (the "HTTP/2 connection") it arrived on. */
  private readonly sessions = new Map<string, MemoryHubConnection>();
  private readonly maxFrameBytes: number | undefined;
  readonly streamWindowBytes: number;

  constructor(options: number | MemoryTransportOptions = {}) {
    const o = typeof options === 'number' ? { maxFrameBytes: options } : options;
    this.maxFrameBytes = o.maxFrameBytes;
    this.streamWindowBytes = o.streamWindowBytes ?? streamReadBufferBytes;
  }

  listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener> {
    return this.listenConnections((connection) => onChannel(connection.control));
  }

  async listenConnections(onConnection: (connection: HubConnection) => void, events: ServerTransportEvents = {}): Promise<TunnelListener> {
    this.onConnection = onConnection;
    this.events = events;
    return {
      address: 'memory',
      close: async () => {
        this.onConnection = undefined;
        for (const c of this.open) c.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down'));
      },
    };
  }

  private admit(link: object, token: string, kind: string, id: string): Admission {
    const session = this.sessions.get(token);
    const admission: Admission =
      session && session.link === link
        ? session.registry.admit(kind, id)
        : { ok: false, error: new HawserError(ErrorCode.StreamUnbound, `stream ${kind}/${id} names no live session of its connection`) };
    if (!admission.ok) this.events.streamRefused?.(admission.error, 'memory-agent');
    return admission;
  }

  private connect(): MemoryAgentConnection {
    const { hub, agent } = memoryEnds(this.maxFrameBytes);
    const link = {};
    const token = randomBytes(16).toString('base64url');
    const connection = new MemoryAgentConnection(agent, link, token, (l, t, k, i) => this.admit(l, t, k, i), this.streamWindowBytes);
    if (!this.onConnection) {
      agent.close(new HawserError(ErrorCode.Unavailable, 'no hub is listening on the memory transport'));
      return connection;
    }
    const session = new MemoryHubConnection(hub, link, token);
    this.sessions.set(token, session);
    void hub.closed.then(() => this.sessions.delete(token));
    this.open.add(agent);
    void agent.closed.then(() => this.open.delete(agent));
    this.onConnection(session);
    return connection;
  }

  client(): ConnectionClientTransport & { connect(): AgentConnection & AgentConnectionTestHooks } {
    // As with grpc-js, releasing the client leaves calls in flight alone: a connection ends by its own close().
    return {
      open: () => this.connect().control,
      connect: () => this.connect(),
      close: () => {},
    };
  }
}
