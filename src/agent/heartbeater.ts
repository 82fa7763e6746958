import { type Clock, ErrorCode, HawserError, type TimerHandle, toHawserError, type wire } from '../tunnel/index.js';
import type { AgentFrameHandler, HubFrame } from './router.js';

// Heartbeats see only this much of a session (nats.js's Heartbeat needs as
// little): send a heartbeat, read the cluster's status, a clock, and a way to
// end the session. Acks reach it through the session router.

export interface HeartbeatLink {
  /** Sends one heartbeat frame; resolves once the transport took it, rejects when the stream is gone. */
  send(heartbeat: wire.Heartbeat): Promise<void>;
  /** The cluster's status now. Never rejects: a failing API server becomes failing health fields. */
  readStatus(previous: wire.ClusterStatus | undefined): Promise<wire.ClusterStatus>;
  readonly clock: Clock;
  /** Ends the session (the link is dead, or a send failed). */
  fail(error: HawserError): void;
  /** A measured round trip, heartbeat to ack. */
  rtt(ms: number): void;
}

export interface HeartbeatTiming {
  /** One heartbeat per interval. */
  intervalMs: number;
  /** The cluster status is read at most this often and rides on the next heartbeat. */
  statusEveryMs: number;
  /** Heartbeats unanswered for this many intervals: the link is dead. */
  missedLimit: number;
  /**
   * A heartbeat whose ack has not come this long after it went out: the link
   * is dead. Heartbeats are the liveness probe, as HTTP/2 keepalive pings
   * were (beat every interval, ack within this), so pings can be rare.
   */
  ackTimeoutMs?: number | undefined;
  /** The round trip last measured (also in an earlier session), sent with the first heartbeat. */
  lastRttMs?: number | undefined;
}

/** A full status goes out at least every this many status periods, changed or not. */
const fullStatusEvery = 10;

/** Identity of a status report, ignoring when it was observed. */
function statusKey(status: wire.ClusterStatus): string {
  return JSON.stringify({ ...status, observedAtUnixMs: 0 });
}

/**
 * Heartbeats for one session: lease renewals every interval, the cluster
 * status every status period, and a watchdog that ends the session when
 * acks stop coming (a link that is up but passes nothing).
 */
export class Heartbeater implements AgentFrameHandler {
  readonly name = 'heartbeat';
  readonly kinds = ['heartbeatAck'] as const;
  /** Acks are handled at once; a burst past this is a hub misbehaving. */
  readonly queueLimit = 256;
  private sequence = 0;
  private lastAckAt: number;
  private lastRttMs: number;
  private lastStatusAt = -Infinity;
  private lastStatus: wire.ClusterStatus | undefined;
  private freshStatus: wire.ClusterStatus | undefined;
  /** The last status that went out in full, and when. */
  private sentStatus: { key: string; at: number } | undefined;
  private refreshing = false;
  private sending = false;
  private stopped = false;
  private tickTimer: TimerHandle | undefined;
  private graceTimer: TimerHandle | undefined;
  private ackTimer: TimerHandle | undefined;
  private ackedSequence = 0;
  private readonly sentAt = new Map<number, number>();

  constructor(
    private readonly link: HeartbeatLink,
    private readonly timing: HeartbeatTiming,
  ) {
    this.lastAckAt = link.clock.now();
    this.lastRttMs = timing.lastRttMs ?? 0;
  }

  start(): void {
    this.tick();
  }

  /** Ends this session's heartbeats; a status read still in flight is then dropped. */
  stop(): void {
    this.stopped = true;
    this.tickTimer?.cancel();
    this.graceTimer?.cancel();
    this.ackTimer?.cancel();
  }

  close(): void {
    this.stop();
  }

  handle(frame: HubFrame): void {
    if (frame.$case === 'heartbeatAck') this.acked(frame.value);
  }

  acked(ack: wire.HeartbeatAck): void {
    const now = this.link.clock.now();
    this.lastAckAt = now;
    this.ackedSequence = Math.max(this.ackedSequence, ack.sequence);
    const sent = this.sentAt.get(ack.sequence);
    if (sent !== undefined) {
      this.lastRttMs = now - sent;
      this.link.rtt(this.lastRttMs);
      this.sentAt.delete(ack.sequence);
    }
  }

  private tick(): void {
    if (this.stopped) return;
    const clock = this.link.clock;
    const now = clock.now();
    const silentMs = now - this.lastAckAt;
    if (silentMs > this.timing.intervalMs * this.timing.missedLimit) {
      this.link.fail(new HawserError(ErrorCode.HeartbeatTimeout, `no heartbeat ack from the hub for ${silentMs}ms`));
      return;
    }
    if (!this.refreshing && now - this.lastStatusAt >= this.timing.statusEveryMs) {
      // The status rides on this tick's heartbeat when the read is quick. A slow API server
      // must not delay the lease renewal: after a short grace the heartbeat goes without it.
      this.refreshing = true;
      this.lastStatusAt = now;
      this.graceTimer = clock.setTimeout(() => void this.beat(), Math.min(2_000, this.timing.intervalMs / 4));
      void this.link.readStatus(this.lastStatus).then((status) => {
        this.graceTimer?.cancel();
        this.refreshing = false;
        this.lastStatus = status;
        this.freshStatus = status;
        void this.beat();
      });
    } else {
      void this.beat();
    }
    this.tickTimer = clock.setTimeout(() => this.tick(), this.timing.intervalMs);
  }

  /** Fails the session unless this heartbeat (or a later one) is acked within ackTimeoutMs of going out. */
  private expectAck(sequence: number): void {
    const timeoutMs = this.timing.ackTimeoutMs;
    if (!timeoutMs || this.stopped) return;
    this.ackTimer?.cancel();
    this.ackTimer = this.link.clock.setTimeout(() => {
      if (this.stopped || this.ackedSequence >= sequence) return;
      this.stop();
      this.link.fail(new HawserError(ErrorCode.HeartbeatTimeout, `heartbeat ${sequence} got no ack from the hub within ${timeoutMs}ms`));
    }, timeoutMs);
  }

  private async beat(): Promise<void> {
    // A send still waiting for drain means the link is slow: do not pile up more.
    if (this.sending || this.stopped) return;
    this.sending = true;
    const fresh = this.freshStatus;
    const now = this.link.clock.now();
    let status = fresh;
    let statusUnchanged = false;
    let key: string | undefined;
    if (fresh) {
      key = statusKey(fresh);
      // An unchanged report is sent as a flag; a full one still goes out now and then.
      const fullEveryMs = this.timing.statusEveryMs * fullStatusEvery;
      if (this.sentStatus?.key === key && now - this.sentStatus.at < fullEveryMs) {
        status = undefined;
        statusUnchanged = true;
      }
    }
    try {
      const sequence = ++this.sequence;
      this.sentAt.set(sequence, now);
      if (this.sentAt.size > 64) this.sentAt.delete(this.sentAt.keys().next().value!);
      await this.link.send({ sequence, sentAtUnixMs: now, status, lastRttMs: Math.round(this.lastRttMs), statusUnchanged });
      this.expectAck(sequence);
      if (this.freshStatus === fresh) this.freshStatus = undefined;
      if (status && key) this.sentStatus = { key, at: now };
    } catch (err) {
      this.stop();
      this.link.fail(toHawserError(err, ErrorCode.Unavailable));
    } finally {
      this.sending = false;
    }
  }
}
