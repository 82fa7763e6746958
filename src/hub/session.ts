import { type ByteStream, ErrorCode, type OpenStreamOptions, type FrameHandler as TunnelFrameHandler, FrameRouter, HawserError, type Negotiated, type wire } from '../tunnel/index.js';

// A welcomed session routes each inbound frame by kind to the handler that
// registered for it (FrameRouter in src/tunnel): each handler owns a bounded
// queue, so an ack never waits behind a status write, and later a sync frame
// never behind either.

export type AgentFrame = NonNullable<wire.ConnectRequest['frame']>;
export type AgentFrameKind = AgentFrame['$case'];

/** What a handler sees of its session: who it is, what was negotiated, and how to answer. */
export interface SessionContext {
  readonly clusterName: string;
  readonly peer: string;
  /** The protocol version and features this session speaks: check a feature before using it. */
  readonly negotiated: Negotiated;
  /** Where the agent's sync stands, as its hello said: sync resumes from here. */
  readonly resume: {
    readonly hubIncarnation: string;
    readonly lastAckedRevision: number;
    /** Feature "chunks": the large object the agent holds the first chunks of. */
    readonly partialObject?: wire.SyncPartialObject;
    /** The largest object the agent takes (0: no limit of its own). */
    readonly maxObjectBytes?: number;
    /** The hello's desired_digest (empty: none). */
    readonly desiredDigest?: string;
    /** The mode the agent runs, as its hello said (UNSPECIFIED: an agent from before; it caches). */
    readonly syncModeInEffect?: wire.SyncMode;
  };
  /** Resolves once the transport took the frame (waits for drain); rejects when the stream is closed. */
  send(frame: wire.ConnectResponse): Promise<void>;
  /** Aborted when the session's stream ends: work in hand stops, since the session waits for it. */
  readonly ended: AbortSignal;
  /**
   * Asks the agent for a request stream on its connection (e.g. one proxied
   * request); the session owns it and ends it with itself. The signal cancels
   * the wait and then the stream. Rejects with HAWSER_PROXY_UNSUPPORTED when the
   * session did not negotiate proxy streams, HAWSER_SESSION_ENDED when it ended.
   */
  openStream(kind: string, signal?: AbortSignal, options?: OpenStreamOptions): Promise<ByteStream>;
  /** Request streams of this session open now. */
  readonly openStreams: number;
  /** Idle streams the agent opened ahead for requests (feature proxy-pool). */
  readonly pooledStreams?: number;
}

/** A handler of agent frames (see FrameHandler in src/tunnel). */
export type FrameHandler = TunnelFrameHandler<AgentFrame>;

/** Builds a session's handler when the session is welcomed. */
export type HandlerFactory = (session: SessionContext) => FrameHandler;

/**
 * The frame router of one hub session. A frame kind no handler took is a
 * protocol violation here: HAWSER_UNEXPECTED_FRAME ends the session.
 */
export class SessionRouter {
  private readonly router: FrameRouter<AgentFrame>;

  constructor(handlers: readonly FrameHandler[], fail: (error: HawserError) => void) {
    this.router = new FrameRouter(handlers, fail);
  }

  /** Queues the frame with its handler; returns the refusal when there is none, it refuses, or its queue is full. */
  route(frame: AgentFrame, frameBytes: number): HawserError | undefined {
    const routed = this.router.route(frame, frameBytes);
    if (routed.kind === 'unhandled') return new HawserError(ErrorCode.UnexpectedFrame, `unexpected ${frame.$case} frame after registration`);
    return routed.kind === 'refused' ? routed.error : undefined;
  }

  /** Stops every handler: frames still waiting are dropped, frames in hand finish. */
  close(): Promise<void> {
    return this.router.close();
  }
}
