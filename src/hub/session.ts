import { ErrorCode, HawserError, type Negotiated, toHawserError, type wire } from '../tunnel/index.js';

// A welcomed session routes each inbound frame by kind to the handler that
// registered for it. Every handler owns a bounded queue and takes its frames
// one at a time, so no handler waits behind another's I/O (an ack never
// waits behind a status write, later a sync frame never behind either).

export type AgentFrame = NonNullable<wire.ConnectRequest['frame']>;
export type AgentFrameKind = AgentFrame['$case'];

/** What a handler sees of its session: who it is, what was negotiated, and how to answer. */
export interface SessionContext {
  readonly clusterName: string;
  readonly peer: string;
  /** The protocol version and features this session speaks: check a feature before using it. */
  readonly negotiated: Negotiated;
  /** Resolves once the transport took the frame (waits for drain); rejects when the stream is closed. */
  send(frame: wire.ConnectResponse): Promise<void>;
}

export interface FrameHandler {
  /** For logs and refusals. */
  readonly name: string;
  /** The frame kinds this handler takes. One handler per kind in a session. */
  readonly kinds: readonly AgentFrameKind[];
  /** Frames waiting at most; one more refuses the session with HAWSER_HANDLER_OVERLOADED. */
  readonly queueLimit: number;
  /**
   * Runs as each frame arrives, in arrival order, before it is queued: cheap
   * checks only (a rate, a size). A returned error refuses the session.
   */
  admit?(frame: AgentFrame, frameBytes: number): HawserError | undefined;
  /** Takes this handler's frames one at a time, in order. A throw ends the session with its code. */
  handle(frame: AgentFrame): Promise<void>;
  /** The session ended: release what the handler holds. */
  close?(): void;
}

/** Builds a session's handler when the session is welcomed. */
export type HandlerFactory = (session: SessionContext) => FrameHandler;

/** One handler's queue and its single worker. */
class HandlerQueue {
  private readonly items: AgentFrame[] = [];
  private working: Promise<void> | undefined;
  private running = false;
  private closed = false;

  constructor(
    readonly handler: FrameHandler,
    private readonly fail: (error: HawserError) => void,
  ) {}

  /** False when the queue is full: the caller refuses the session. */
  push(frame: AgentFrame): boolean {
    if (this.closed) return true;
    if (this.items.length >= this.handler.queueLimit) return false;
    this.items.push(frame);
    if (!this.running) {
      this.running = true;
      this.working = this.work();
    }
    return true;
  }

  private async work(): Promise<void> {
    // `running` is cleared in the same turn the queue is seen empty, so a push never strands a frame.
    for (let frame = this.items.shift(); frame && !this.closed; frame = this.items.shift()) {
      try {
        await this.handler.handle(frame);
      } catch (err) {
        this.closed = true;
        this.items.length = 0;
        const cause = toHawserError(err, ErrorCode.HandlerFailed);
        // A failure of the stream itself keeps its code; anything else names the handler.
        this.fail(
          err instanceof HawserError
            ? cause
            : new HawserError(ErrorCode.HandlerFailed, `${this.handler.name} handler failed on a ${frame.$case} frame: ${cause.message}`, { cause: err }),
        );
      }
    }
    this.running = false;
  }

  /** Drops what waits and waits for the frame in hand. */
  async close(): Promise<void> {
    this.closed = true;
    this.items.length = 0;
    await this.working;
    this.handler.close?.();
  }
}

/**
 * The frame router of one session. route() is called on the session's read
 * loop and never waits: it checks, queues and returns.
 */
export class SessionRouter {
  private readonly byKind = new Map<AgentFrameKind, HandlerQueue>();
  private readonly queues: HandlerQueue[] = [];

  constructor(handlers: readonly FrameHandler[], fail: (error: HawserError) => void) {
    for (const handler of handlers) {
      const queue = new HandlerQueue(handler, fail);
      this.queues.push(queue);
      for (const kind of handler.kinds) {
        const taken = this.byKind.get(kind);
        if (taken) throw new Error(`frame kind ${kind} has two handlers: ${taken.handler.name} and ${handler.name}`);
        this.byKind.set(kind, queue);
      }
    }
  }

  /** Queues the frame with its handler; returns the refusal when there is none, it refuses, or its queue is full. */
  route(frame: AgentFrame, frameBytes: number): HawserError | undefined {
    const queue = this.byKind.get(frame.$case);
    if (!queue) return new HawserError(ErrorCode.UnexpectedFrame, `unexpected ${frame.$case} frame after registration`);
    const refusal = queue.handler.admit?.(frame, frameBytes);
    if (refusal) return refusal;
    if (!queue.push(frame)) {
      return new HawserError(
        ErrorCode.HandlerOverloaded,
        `${queue.handler.name} handler has ${queue.handler.queueLimit} ${frame.$case} frames waiting; the agent sends faster than the hub takes them`,
      );
    }
    return undefined;
  }

  /** Stops every handler: frames still waiting are dropped, frames in hand finish. */
  async close(): Promise<void> {
    await Promise.allSettled(this.queues.map((q) => q.close()));
  }
}
