import type { Logger } from 'pino';
import { type AgentOpenStreamOptions, type ByteStream, type FrameHandler, FrameRouter, type HawserError, type Negotiated, type wire } from '../tunnel/index.js';

// The agent's session router: after the welcome, each frame from the hub goes
// by kind to the handler registered for it (heartbeat acks, trust bundles;
// later sync and proxy control), each in its own bounded queue. A kind with
// no handler is logged and counted, never fatal: a newer hub may know more.

export type HubFrame = NonNullable<wire.ConnectResponse['frame']>;
export type HubFrameKind = HubFrame['$case'];
export type AgentFrameHandler = FrameHandler<HubFrame>;

/** What a handler sees of its session: who, what was negotiated, and how to send. */
export interface AgentSessionContext {
  readonly clusterName: string;
  /** The protocol version and features this session speaks: check a feature before using it. */
  readonly negotiated: Negotiated;
  /** Resolves once the transport took the frame; rejects when the stream is closed. */
  send(frame: wire.ConnectRequest): Promise<void>;
  /** Aborted when the session's stream ends: work in hand stops, since the session waits for it. */
  readonly ended: AbortSignal;
  /**
   * Opens a request stream on the session's connection; `requestId` answers
   * the hub's OpenStream. Absent when the transport carries no request streams.
   */
  openStream?(kind: string, signal?: AbortSignal, options?: AgentOpenStreamOptions): Promise<ByteStream>;
  /** Request streams of this session open now (0 without a connection). */
  readonly openStreams?: number;
}

/** Builds a session's handler when the session is welcomed. */
export type AgentHandlerFactory = (session: AgentSessionContext) => AgentFrameHandler;

/** Frames no handler took, by kind, over the agent's life (it has no metrics endpoint: read by tests and logs). */
export type UnhandledFrameCounts = Map<string, number>;

export class AgentSessionRouter {
  private readonly router: FrameRouter<HubFrame>;
  private readonly logged = new Set<string>();

  constructor(
    handlers: readonly AgentFrameHandler[],
    private readonly deps: { fail(error: HawserError): void; logger: Logger; unhandled: UnhandledFrameCounts },
  ) {
    this.router = new FrameRouter(handlers, deps.fail);
  }

  /** Queues the frame; returns the error that ends the session when its handler refuses it or is full. */
  route(frame: HubFrame, frameBytes: number): HawserError | undefined {
    const routed = this.router.route(frame, frameBytes);
    if (routed.kind === 'refused') return routed.error;
    if (routed.kind === 'unhandled') {
      const counts = this.deps.unhandled;
      counts.set(frame.$case, (counts.get(frame.$case) ?? 0) + 1);
      // Once per kind and session: a hub repeating a frame must not flood the log.
      if (!this.logged.has(frame.$case)) {
        this.logged.add(frame.$case);
        this.deps.logger.warn({ frame: frame.$case, bytes: frameBytes }, 'ignoring a frame from the hub that nothing on this agent handles');
      }
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.router.close();
  }
}
