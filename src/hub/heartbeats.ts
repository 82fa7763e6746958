import type { Logger } from 'pino';
import { type Clock, ErrorCode, HawserError, type wire } from '../tunnel/index.js';
import type { ClusterStatusWriter } from './cluster-status.js';
import type { LeaseTracker } from './leases.js';
import type { HubMetrics } from './metrics.js';
import { type BucketPolicy, TokenBucket } from './ratelimit.js';
import type { AgentFrame, FrameHandler, SessionContext } from './session.js';

export interface HeartbeatLimits {
  /** Heartbeats allowed per session. */
  heartbeats: BucketPolicy;
  /** Largest heartbeat frame that carries a status report. */
  maxStatusBytes: number;
  /** Heartbeats waiting for their ack at most (the rate bound keeps this far from full). */
  heartbeatQueueLimit: number;
}

/**
 * A session's heartbeats: renews the lease in memory, acks at once, and hands
 * the status to the writer without waiting for the store, so a slow disk
 * never costs an agent its lease.
 */
export class HeartbeatHandler implements FrameHandler {
  readonly name = 'heartbeat';
  readonly kinds = ['heartbeat'] as const;
  readonly queueLimit: number;
  private readonly bucket: TokenBucket;

  constructor(
    private readonly session: SessionContext,
    private readonly leaseDurationMs: number,
    private readonly limits: HeartbeatLimits,
    private readonly deps: { leases: LeaseTracker; writer: ClusterStatusWriter; metrics: HubMetrics; clock: Clock; logger: Logger },
  ) {
    this.queueLimit = limits.heartbeatQueueLimit;
    this.bucket = new TokenBucket(limits.heartbeats, deps.clock);
  }

  /** Over the session's rate, or carrying an oversized status: refused before it costs anything. */
  admit(frame: AgentFrame, frameBytes: number): HawserError | undefined {
    if (frame.$case !== 'heartbeat') return undefined;
    if (!this.bucket.take()) {
      const { capacity, refillPerSecond } = this.limits.heartbeats;
      return new HawserError(
        ErrorCode.HeartbeatFlood,
        `heartbeats arrive faster than ${refillPerSecond}/s (bursts of ${capacity}); an agent sends at most a few per second`,
      );
    }
    // The status is nearly all of the frame: its size as received bounds the report
    // without encoding it again on every heartbeat.
    if (frame.value.status && frameBytes > this.limits.maxStatusBytes) {
      return new HawserError(
        ErrorCode.StatusTooLarge,
        `heartbeat with a status report of ${frameBytes} bytes exceeds the limit of ${this.limits.maxStatusBytes} bytes`,
      );
    }
    return undefined;
  }

  async handle(frame: AgentFrame): Promise<void> {
    if (frame.$case !== 'heartbeat') return;
    const heartbeat = frame.value;
    const { expiresAt } = this.renew(heartbeat);
    // Measured by the agent on its own clock: clock skew between the two cannot distort it.
    if (heartbeat.lastRttMs > 0) this.deps.metrics.rtt.observe(heartbeat.lastRttMs / 1000);
    await this.session.send({ frame: { $case: 'heartbeatAck', value: { sequence: heartbeat.sequence, leaseExpiresAtUnixMs: expiresAt } } });
  }

  /** The lease in memory now; the status to the writer, queued. */
  private renew(heartbeat: wire.Heartbeat): { expiresAt: number } {
    const name = this.session.clusterName;
    const now = this.deps.clock.now();
    const { expiresAt, wasExpired } = this.deps.leases.renew(name, this.leaseDurationMs);
    this.deps.metrics.lastHeartbeat.set({ cluster: name }, now / 1000);
    this.deps.writer.queue(name, {
      leaseDurationMs: this.leaseDurationMs,
      ...(heartbeat.status ? { report: { status: heartbeat.status, atMs: now } } : {}),
      ...(heartbeat.statusUnchanged && !heartbeat.status ? { unchangedAtMs: now } : {}),
      ...(wasExpired ? { renewed: true } : {}),
    });
    if (wasExpired) this.deps.logger.info({ cluster: name }, 'cluster lease renewed after expiry: Ready restored, unreachable taint removed');
    return { expiresAt };
  }
}
