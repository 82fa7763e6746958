import { ErrorCode, HawserError, toHawserError } from './errors.js';

// Routes a session's inbound frames by kind to the handlers registered for
// them. Every handler owns a bounded queue and takes its frames one at a
// time, so no handler waits behind another's I/O. Hub and agent each put
// their own policy on top (what an unhandled kind means).

/** A oneof frame as ts-proto generates it. */
export interface CaseFrame {
  readonly $case: string;
}

export interface FrameHandler<F extends CaseFrame> {
  /** For logs and refusals. */
  readonly name: string;
  /** The frame kinds this handler takes. One handler per kind in a session. */
  readonly kinds: readonly F['$case'][];
  /** Frames waiting at most; one more is HAWSER_HANDLER_OVERLOADED. */
  readonly queueLimit: number;
  /**
   * Runs as each frame arrives, in arrival order, before it is queued: cheap
   * checks only (a rate, a size). A returned error ends the session.
   */
  admit?(frame: F, frameBytes: number): HawserError | undefined;
  /** Takes this handler's frames one at a time, in order. A throw ends the session with its code. */
  handle(frame: F): Promise<void> | void;
  /** The session ended: release what the handler holds. */
  close?(): void;
}

/** One handler's queue and its single worker. */
class HandlerQueue<F extends CaseFrame> {
  private readonly items: F[] = [];
  private working: Promise<void> | undefined;
  private running = false;
  private closed = false;

  constructor(
    readonly handler: FrameHandler<F>,
    private readonly fail: (error: HawserError) => void,
  ) {}

  /** False when the queue is full. */
  push(frame: F): boolean {
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
        // A coded error (the stream closed under a send) keeps its code; anything else names the handler.
        this.fail(
          err instanceof HawserError
            ? err
            : new HawserError(ErrorCode.HandlerFailed, `${this.handler.name} handler failed on a ${frame.$case} frame: ${toHawserError(err).message}`, {
                cause: err,
              }),
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

export type RouteResult =
  | { kind: 'queued' }
  /** No handler took this kind: the caller's policy decides. */
  | { kind: 'unhandled' }
  /** The handler refused the frame, or its queue is full: the session ends. */
  | { kind: 'refused'; error: HawserError };

/** The frame router of one session. route() never waits: it checks, queues and returns. */
export class FrameRouter<F extends CaseFrame> {
  private readonly byKind = new Map<string, HandlerQueue<F>>();
  private readonly queues: Array<HandlerQueue<F>> = [];

  /** `fail` hears a handler's failure; the caller ends the session with it. */
  constructor(handlers: ReadonlyArray<FrameHandler<F>>, fail: (error: HawserError) => void) {
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

  route(frame: F, frameBytes: number): RouteResult {
    const queue = this.byKind.get(frame.$case);
    if (!queue) return { kind: 'unhandled' };
    const refusal = queue.handler.admit?.(frame, frameBytes);
    if (refusal) return { kind: 'refused', error: refusal };
    if (!queue.push(frame)) {
      return {
        kind: 'refused',
        error: new HawserError(
          ErrorCode.HandlerOverloaded,
          `${queue.handler.name} handler has ${queue.handler.queueLimit} ${frame.$case} frames waiting; the peer sends faster than they are taken`,
        ),
      };
    }
    return { kind: 'queued' };
  }

  /** Stops every handler: frames still waiting are dropped, frames in hand finish. */
  async close(): Promise<void> {
    await Promise.allSettled(this.queues.map((q) => q.close()));
  }
}
