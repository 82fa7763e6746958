import { describe, expect, it } from 'vitest';
import { Heartbeater, type HeartbeatLink, type HeartbeatTiming } from '../../src/agent/heartbeater.js';
import type { ClusterStatus, Heartbeat } from '../../src/gen/hawser/v1/tunnel.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';
import { clusterStatus, epoch, settle, waitFor } from './support.js';

// The heartbeater through its narrow interface only: a send, a status read, a clock, a way to fail.

class FakeLink implements HeartbeatLink {
  readonly clock = new ManualClock(epoch);
  readonly sent: Heartbeat[] = [];
  readonly failures: HawserError[] = [];
  readonly rtts: number[] = [];
  reads = 0;
  /** Set to hold status reads (a slow API server) until released. */
  holdReads: Promise<void> | undefined;
  sendError: Error | undefined;
  status: ClusterStatus = clusterStatus('ok');

  async send(heartbeat: Heartbeat): Promise<void> {
    if (this.sendError) throw this.sendError;
    this.sent.push(heartbeat);
  }
  async readStatus(): Promise<ClusterStatus> {
    this.reads++;
    await this.holdReads;
    return this.status;
  }
  fail(error: HawserError): void {
    this.failures.push(error);
  }
  rtt(ms: number): void {
    this.rtts.push(ms);
  }
}

const timing: HeartbeatTiming = { intervalMs: 1_000, statusEveryMs: 2_000, missedLimit: 3 };

function start(link: FakeLink, extra: Partial<HeartbeatTiming> = {}): Heartbeater {
  const beater = new Heartbeater(link, { ...timing, ...extra });
  beater.start();
  return beater;
}

const ack = (beater: Heartbeater, sequence: number) => beater.handle({ $case: 'heartbeatAck', value: { sequence, leaseExpiresAtUnixMs: 0 } });

describe('Heartbeater', () => {
  it('beats once per interval with the status every status period, and measures each round trip', async () => {
    const link = new FakeLink();
    const beater = start(link, { lastRttMs: 17 });
    await waitFor('the first heartbeat', () => link.sent.length === 1);
    expect(link.sent[0]).toMatchObject({ sequence: 1, status: link.status, lastRttMs: 17 });
    link.clock.advance(40);
    ack(beater, 1);
    expect(link.rtts).toEqual([40]);

    link.clock.advance(960);
    await waitFor('the second heartbeat', () => link.sent.length === 2);
    // Between status periods: a plain lease renewal carrying the last round trip.
    expect(link.sent[1]).toMatchObject({ sequence: 2, status: undefined, statusUnchanged: false, lastRttMs: 40 });
    link.clock.advance(1_000);
    await waitFor('the third heartbeat', () => link.sent.length === 3);
    // The next status read found nothing new: it goes as a flag.
    expect(link.sent[2]).toMatchObject({ sequence: 3, status: undefined, statusUnchanged: true });
    expect(link.reads).toBe(2);
    beater.stop();
  });

  it('ends the session once acks stop for missedLimit intervals, and not before', async () => {
    const link = new FakeLink();
    start(link);
    await waitFor('the first heartbeat', () => link.sent.length === 1);
    for (let i = 0; i < 3; i++) {
      link.clock.advance(1_000);
      await settle();
    }
    expect(link.failures).toEqual([]);
    link.clock.advance(1_000);
    await waitFor('the watchdog', () => link.failures.length === 1);
    expect(link.failures[0]!.code).toBe(ErrorCode.HeartbeatTimeout);
    // It stops beating after it failed the session.
    const sent = link.sent.length;
    link.clock.advance(5_000);
    await settle();
    expect(link.sent.length).toBe(sent);
  });

  it('with an ack timeout, ends the session when one heartbeat is not acked in time (the liveness probe)', async () => {
    const link = new FakeLink();
    const beater = start(link, { ackTimeoutMs: 300 });
    await waitFor('the first heartbeat', () => link.sent.length === 1);
    link.clock.advance(299);
    ack(beater, 1);
    link.clock.advance(701);
    await waitFor('the second heartbeat', () => link.sent.length === 2);
    link.clock.advance(299);
    await settle();
    expect(link.failures).toEqual([]);
    link.clock.advance(1);
    await waitFor('the ack deadline', () => link.failures.length === 1);
    expect(link.failures[0]!.code).toBe(ErrorCode.HeartbeatTimeout);
    expect(link.failures[0]!.message).toMatch(/heartbeat 2 got no ack from the hub within 300ms/);
    // Long before missedLimit (3 intervals) would have noticed.
    const sent = link.sent.length;
    link.clock.advance(5_000);
    await settle();
    expect(link.sent.length).toBe(sent);
  });

  it('keeps a link whose acks come', async () => {
    const link = new FakeLink();
    const beater = start(link);
    for (let i = 1; i <= 10; i++) {
      await waitFor(`heartbeat ${i}`, () => link.sent.length === i);
      ack(beater, i);
      link.clock.advance(1_000);
    }
    expect(link.failures).toEqual([]);
    beater.stop();
  });

  it('sends the lease renewal without the status when the status read is slow', async () => {
    const link = new FakeLink();
    let release!: () => void;
    link.holdReads = new Promise((r) => (release = r));
    const beater = start(link);
    await settle();
    expect(link.sent).toEqual([]);
    // The grace is a quarter interval: then the heartbeat goes without the status.
    link.clock.advance(250);
    await waitFor('the renewal without status', () => link.sent.length === 1);
    expect(link.sent[0]!.status).toBeUndefined();
    release();
    await waitFor('the status once read', () => link.sent.length === 2);
    expect(link.sent[1]!.status).toEqual(link.status);
    beater.stop();
  });

  it('fails the session with the send error and stops', async () => {
    const link = new FakeLink();
    link.sendError = new HawserError(ErrorCode.Unavailable, 'stream closed');
    start(link);
    await waitFor('the failure', () => link.failures.length === 1);
    expect(link.failures[0]!.code).toBe(ErrorCode.Unavailable);
    link.clock.advance(10_000);
    await settle();
    expect(link.failures).toHaveLength(1);
  });
});
