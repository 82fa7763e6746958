import type { Logger } from 'pino';
import { Backoff, type BackoffPolicy, type Clock, ErrorCode, type HawserError, isPermanent, needsOperator } from '../tunnel/index.js';
import { type AgentState, canTransition } from './state.js';

// The agent's connection as a state machine with one reconnect loop: dial a
// session, and when it ends back off (jittered, capped; a quick and a second
// jittered retry after a healthy connection dropped; a busy hub's retry-after
// as it says, see Backoff) and dial again, until stopped. Only one loop runs at a time;
// asking again returns the running one (nats.js). setState is the only way
// the state changes, and only along the listed transitions.

/** How a session tells the loop how far it got. */
export interface SessionProgress {
  registering(pendingRequest?: string): void;
  /** Welcomed: the connection counts as up from now (for the backoff reset). */
  ready(clusterName: string): void;
  /** The hub acked a heartbeat on this session: the connection worked (earns a quick retry when it drops). */
  heartbeatAcked(): void;
}

export interface ReconnectDeps {
  clock: Clock;
  random: () => number;
  logger: Logger;
  /** Runs once before the first dial; a failure ends the loop (start() rejects). */
  init(): Promise<unknown>;
  /** One stream from dial to close; resolves with why it ended. */
  session(progress: SessionProgress): Promise<HawserError>;
  /** Ends the session in progress (stop() calls it). */
  interrupt(): void;
  onState(state: AgentState): void;
}

export class ReconnectLoop {
  private current: AgentState = { kind: 'idle' };
  private readonly backoff: Backoff;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private stopRequested = false;
  private attempt = 0;
  /** Why the last session ended. */
  lastError: HawserError | undefined;

  constructor(
    policy: BackoffPolicy,
    private readonly deps: ReconnectDeps,
  ) {
    this.backoff = new Backoff(policy, deps.random);
  }

  get state(): AgentState {
    return this.current;
  }

  /** stop() was called: a session whose stream opens only now must close it at once. */
  get stopping(): boolean {
    return this.stopRequested;
  }

  private setState(next: AgentState): void {
    if (!canTransition(this.current.kind, next.kind)) {
      throw new Error(`agent state ${this.current.kind} -> ${next.kind} is not allowed`);
    }
    const from = this.current.kind;
    this.current = next;
    const { kind, ...detail } = next;
    const log = { from, to: kind, ...detail, ...(next.kind === 'backing-off' ? { reason: next.reason.toJSON() } : {}) };
    if (next.kind === 'backing-off') this.deps.logger.warn(log, `agent ${kind}`);
    else this.deps.logger.info(log, `agent ${kind}`);
    this.deps.onState(next);
  }

  /** Starts the loop; calling again returns the same loop. */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.loop;
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    this.deps.interrupt();
    this.wake?.();
    if (!this.loop && this.current.kind !== 'stopped') this.setState({ kind: 'stopped' });
    await this.loop;
  }

  private async run(): Promise<void> {
    await this.deps.init();
    const { clock, logger } = this.deps;
    const progress: SessionProgress = {
      registering: (pendingRequest) => this.setState(pendingRequest === undefined ? { kind: 'registering' } : { kind: 'registering', pendingRequest }),
      ready: (clusterName) => {
        this.backoff.markConnected(clock.now());
        this.setState({ kind: 'ready', clusterName, since: clock.now() });
      },
      heartbeatAcked: () => this.backoff.markHealthy(),
    };
    while (!this.stopRequested) {
      this.setState({ kind: 'connecting', attempt: this.attempt++ });
      const error = await this.deps.session(progress);
      this.backoff.markDisconnected(clock.now());
      if (this.stopRequested) break;
      this.lastError = error;
      // A mistake only an operator can fix (a wrong CA) is retried, but only at the backoff cap.
      const delayMs =
        error.code === ErrorCode.HubBusy
          ? this.backoff.nextAfterBusy(error.retryAfterMs ?? 0)
          : this.backoff.next(needsOperator(error.code) ? Number.POSITIVE_INFINITY : error.retryAfterMs);
      // Which rule chose the wait (quick, second, backoff, retry-after), for operators and the link tests reading this log.
      const retry = this.backoff.lastRetryKind;
      logger.info({ delayMs, quickRetry: retry === 'quick', retry, attempts: this.backoff.attempts, code: error.code }, 'agent reconnect wait');
      this.setState({ kind: 'backing-off', delayMs, reason: error });
      if (isPermanent(error.code) || needsOperator(error.code)) {
        logger.error({ code: error.code, attempts: this.backoff.attempts }, `hub refused this agent: ${error.message}`);
      }
      await new Promise<void>((resolve) => {
        const timer = clock.setTimeout(resolve, delayMs);
        this.wake = () => {
          timer.cancel();
          resolve();
        };
      });
      this.wake = undefined;
    }
    this.setState({ kind: 'stopped' });
  }
}
