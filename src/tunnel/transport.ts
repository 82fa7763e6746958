import type { ConnectRequest, ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import type { Inbound } from './codec.js';
import type { HawserError } from './errors.js';

/**
 * One bidirectional frame stream. Hub and agent logic speak only to this;
 * the gRPC and in-memory transports implement it.
 */
export interface FrameChannel<In, Out> {
  /** Resolves once the transport has taken the frame (waits for drain). Rejects when closed. */
  send(frame: Out): Promise<void>;
  /** Inbound frames until the peer ends the stream or it fails. */
  frames(): AsyncIterable<Inbound<In>>;
  /** Ends the stream; an error is delivered to the peer as the reason. */
  close(error?: HawserError): void;
  /** Settles when the stream is over, with the reason if it failed. */
  readonly closed: Promise<HawserError | undefined>;
  /** The remote address as the transport sees it (for logs). */
  readonly peer: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export type HubChannel = FrameChannel<ConnectRequest, ConnectResponse>;
export type AgentChannel = FrameChannel<ConnectResponse, ConnectRequest>;

/**
 * One request stream inside an agent's connection: bytes both ways, each
 * half closed on its own, cancelled by an AbortSignal. The streams of a
 * connection end when its control stream (its session) ends.
 */
export interface ByteStream {
  /** What it carries, e.g. "proxy" or "sync". */
  readonly kind: string;
  /** Unique within its session: the hub's OpenStream id, or one the agent chose. */
  readonly id: string;
  /**
   * Resolves once the transport took the chunk; the caller may then reuse it.
   * Only a bounded number of bytes wait unsent, so a peer that does not read
   * stalls this writer rather than growing memory. Rejects once the stream
   * is over or our half is ended.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends our half: the peer reads what was written, then the end. */
  end(): Promise<void>;
  /**
   * Inbound chunks in order, until the peer ends its half. Throws the
   * HawserError that ended the stream otherwise. One reader.
   */
  chunks(): AsyncIterable<Uint8Array>;
  /**
   * Cancels both halves now. The peer's reads and writes fail: with
   * `reason`'s code when the hub aborts, with HAWSER_CANCELLED when the agent
   * does, or when the hub aborts a stream whose agent stopped reading (only
   * an HTTP/2 reset ends it at once, and a reset carries no reason).
   */
  abort(reason?: HawserError): void;
  /** Settles (never rejects) once both halves are over: undefined, or the error that ended it. */
  readonly closed: Promise<HawserError | undefined>;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** The hub's request for a stream, which the hub's protocol announces on the control stream (an OpenStream frame). */
export interface StreamRequest {
  readonly id: string;
  readonly kind: string;
  /** The stream's first bytes, sent in the request itself (OpenStream.prelude); only to an agent that negotiated it. */
  readonly prelude?: Uint8Array;
}

/** How the hub asks for a stream. */
export interface OpenStreamOptions {
  /** Bytes the agent gets with the request, before the stream is open (StreamRequest.prelude). */
  prelude?: Uint8Array;
}

/** What a hub session does with streams once it is authenticated. */
export interface StreamAcceptor {
  /**
   * Streams the agent opens on its own (e.g. sync). Without it they are
   * refused with HAWSER_STREAM_REFUSED; the handler may abort one it does not want.
   */
  onStream?(stream: ByteStream): void;
  /**
   * Kinds the agent may open ahead, each with how many idle ones the hub holds
   * at most: such a stream waits, unseen by onStream, until openStream takes it
   * (no announcement; the prelude becomes its first bytes). One over the limit
   * is refused with HAWSER_STREAM_REFUSED.
   */
  readonly pools?: Readonly<Record<string, number>>;
  /** Tells the agent to open the stream the hub's openStream asked for (sends an OpenStream frame). */
  announce(request: StreamRequest): Promise<void>;
}

/**
 * The hub's side of one agent connection: its control stream and the
 * request streams bound to it. Owns them: when the control stream ends,
 * every stream ends (HAWSER_SESSION_ENDED).
 */
export interface HubConnection {
  readonly control: HubChannel;
  readonly peer: string;
  /**
   * The session is authenticated: from now on the agent's streams are taken.
   * Call it before the welcome goes out; until then every stream is refused.
   */
  acceptStreams(acceptor: StreamAcceptor): void;
  /**
   * Takes an idle stream the agent opened ahead of this kind and writes the
   * prelude on it; else asks the agent for a stream (acceptor.announce) and
   * resolves when it arrives. The signal cancels the wait and, later, the stream itself
   * (AbortSignal.timeout gives HAWSER_DEADLINE_EXCEEDED).
   */
  openStream(kind: string, signal?: AbortSignal, options?: OpenStreamOptions): Promise<ByteStream>;
  /** Streams open now (a gauge), without the idle pooled ones. */
  readonly openStreams: number;
  /** Streams the agent opened ahead (StreamAcceptor.pools) that wait for a request. */
  readonly pooledStreams: number;
  /** Ends the control stream and, first, every request stream. */
  close(error?: HawserError): void;
  readonly closed: Promise<HawserError | undefined>;
}

export interface AgentOpenStreamOptions {
  /** Answers the hub's OpenStream with this id; without it the stream is the agent's own. */
  requestId?: string;
  /**
   * Resolves at once, before the hub took the stream, so writes start without waiting a
   * round trip (for a stream the hub asked for); a refusal then fails the stream instead.
   */
  early?: boolean;
}

/** The agent's side of its connection to the hub. */
export interface AgentConnection {
  readonly control: AgentChannel;
  /**
   * Opens a request stream bound to this connection's session. `requestId`
   * answers the hub's OpenStream; without it the stream is the agent's own.
   * Resolves once the hub took it; rejects with HAWSER_STREAM_REFUSED,
   * HAWSER_STREAM_UNBOUND, HAWSER_SESSION_ENDED or the signal's reason.
   */
  openStream(kind: string, signal?: AbortSignal, options?: AgentOpenStreamOptions): Promise<ByteStream>;
  readonly openStreams: number;
  /**
   * Ends every request stream, then the control stream. The HTTP/2
   * connection itself goes with the transport's next connect() or close().
   */
  close(error?: HawserError): void;
  readonly closed: Promise<HawserError | undefined>;
}

/** What only tests use: a stream that names another session (an attacker's move). */
export interface AgentConnectionTestHooks {
  /** The session token the hub gave this connection. */
  sessionToken(): Promise<string>;
  openStreamNaming(sessionToken: string, kind: string, signal?: AbortSignal): Promise<ByteStream>;
}

export interface TunnelListener {
  /** host:port actually bound (port 0 resolved). */
  readonly address: string;
  /** Stops accepting, closes open channels after graceMs. */
  close(graceMs?: number): Promise<void>;
}

export interface ServerTransport {
  listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener>;
}

export interface ServerTransportEvents {
  /** A stream the transport refused (unbound, or not taken by its session): for counting. */
  streamRefused?(error: HawserError, peer: string): void;
}

/** A server transport whose connections carry request streams besides their control stream. */
export interface ConnectionServerTransport extends ServerTransport {
  /** listen(), with each control stream's connection: connection.control is the channel. */
  listenConnections(onConnection: (connection: HubConnection) => void, events?: ServerTransportEvents): Promise<TunnelListener>;
}

export interface ClientTransport {
  /** Opens a stream to the hub. Dial failures surface as the channel closing. */
  open(): AgentChannel;
  /** Releases the underlying connection. */
  close(): void;
}

/** A client transport whose connections carry request streams besides their control stream. */
export interface ConnectionClientTransport extends ClientTransport {
  /**
   * Dials a fresh connection (closing the previous one) and opens its
   * control stream: open() is connect().control.
   */
  connect(): AgentConnection;
}
