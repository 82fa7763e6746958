import { describe, expect, it } from 'vitest';
import { foldStatusChange, needsWrite } from '../../src/hub/cluster-status.js';
import { type AgentFrame, type FrameHandler, SessionRouter } from '../../src/hub/session.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';
import { waitFor } from './support.js';

// The session router on its own: frames by kind to handlers, each with its own bounded queue.

const heartbeat = (sequence: number): AgentFrame => ({
  $case: 'heartbeat',
  value: { sequence, sentAtUnixMs: 0, status: undefined, lastRttMs: 0, statusUnchanged: false },
});
// No agent frame besides hello and heartbeat exists yet: hello stands in for sync's frames.
const other: AgentFrame = {
  $case: 'hello',
  value: {
    clusterId: 'x',
    auth: undefined,
    registration: undefined,
    lastAckedRevision: 0,
    leaseDurationMs: 0,
    agentVersion: '',
    publicKey: Buffer.alloc(0),
    cacheQuarantines: 0,
    protocolVersion: 0,
    minProtocolVersion: 0,
    features: [],
    hubIncarnation: '',
    syncModeInEffect: 0,
    desiredDigest: '',
  },
};

/** A handler that records what it took and can be held, as slow I/O would hold it. */
class RecordingHandler implements FrameHandler {
  readonly taken: AgentFrame[] = [];
  hold: Promise<void> | undefined;
  fail: Error | undefined;
  closed = false;
  constructor(
    readonly name: string,
    readonly kinds: readonly AgentFrame['$case'][],
    readonly queueLimit = 4,
  ) {}
  async handle(frame: AgentFrame): Promise<void> {
    if (this.fail) throw this.fail;
    await this.hold;
    this.taken.push(frame);
  }
  close(): void {
    this.closed = true;
  }
}

function held(): { promise: Promise<void>; release(): void } {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
}

describe('SessionRouter', () => {
  it('hands each frame to the handler of its kind, in order, and a held handler holds no other', async () => {
    const beats = new RecordingHandler('heartbeat', ['heartbeat']);
    const slow = new RecordingHandler('sync', ['hello']);
    const gate = held();
    slow.hold = gate.promise;
    const router = new SessionRouter([beats, slow], () => {
      throw new Error('no failure expected');
    });
    expect(router.route(other, 10)).toBeUndefined();
    for (let i = 1; i <= 3; i++) expect(router.route(heartbeat(i), 10)).toBeUndefined();
    await waitFor('the heartbeats handled', () => beats.taken.length === 3);
    expect(beats.taken.map((f) => (f.$case === 'heartbeat' ? f.value.sequence : -1))).toEqual([1, 2, 3]);
    expect(slow.taken).toEqual([]);
    gate.release();
    await waitFor('the held frame handled', () => slow.taken.length === 1);
    await router.close();
    expect(beats.closed && slow.closed).toBe(true);
  });

  it('refuses a frame kind no handler took as unexpected', () => {
    const router = new SessionRouter([new RecordingHandler('heartbeat', ['heartbeat'])], () => undefined);
    expect(router.route(other, 10)?.code).toBe(ErrorCode.UnexpectedFrame);
  });

  it('refuses a frame its handler does not admit, before it is queued', async () => {
    const beats = new RecordingHandler('heartbeat', ['heartbeat']);
    const admitting = Object.assign(beats, {
      admit: (frame: AgentFrame) => (frame.$case === 'heartbeat' && frame.value.sequence > 1 ? new HawserError(ErrorCode.HeartbeatFlood, 'too many') : undefined),
    });
    const router = new SessionRouter([admitting], () => undefined);
    expect(router.route(heartbeat(1), 10)).toBeUndefined();
    expect(router.route(heartbeat(2), 10)?.code).toBe(ErrorCode.HeartbeatFlood);
    await waitFor('the admitted frame handled', () => beats.taken.length === 1);
  });

  it('refuses with HAWSER_HANDLER_OVERLOADED once a handler queue is full, never growing it', () => {
    const slow = new RecordingHandler('sync', ['heartbeat'], 2);
    slow.hold = new Promise(() => {});
    const router = new SessionRouter([slow], () => undefined);
    // One in hand, two waiting: the queue is full.
    for (let i = 1; i <= 3; i++) expect(router.route(heartbeat(i), 10)).toBeUndefined();
    const refusal = router.route(heartbeat(4), 10);
    expect(refusal?.code).toBe(ErrorCode.HandlerOverloaded);
    expect(refusal?.message).toContain('sync handler has 2 heartbeat frames waiting');
  });

  it('ends the session with HAWSER_HANDLER_FAILED when a handler throws, and with the code of a coded error', async () => {
    const failures: HawserError[] = [];
    const broken = new RecordingHandler('sync', ['hello']);
    broken.fail = new Error('disk on fire');
    const router = new SessionRouter([broken], (e) => failures.push(e));
    router.route(other, 10);
    await waitFor('the failure', () => failures.length === 1);
    expect(failures[0]!.code).toBe(ErrorCode.HandlerFailed);
    expect(failures[0]!.message).toContain('sync handler failed on a hello frame: disk on fire');
    // After a failure the handler takes nothing more.
    router.route(other, 10);
    await router.close();
    expect(failures).toHaveLength(1);

    const coded: HawserError[] = [];
    const gone = new RecordingHandler('heartbeat', ['heartbeat']);
    gone.fail = new HawserError(ErrorCode.Unavailable, 'stream closed');
    const second = new SessionRouter([gone], (e) => coded.push(e));
    second.route(heartbeat(1), 10);
    await waitFor('the failure', () => coded.length === 1);
    expect(coded[0]!.code).toBe(ErrorCode.Unavailable);
  });

  it('refuses two handlers for one frame kind', () => {
    expect(() => new SessionRouter([new RecordingHandler('a', ['heartbeat']), new RecordingHandler('b', ['heartbeat'])], () => undefined)).toThrow(
      /two handlers/,
    );
  });
});

describe('foldStatusChange', () => {
  const report = (readyz: string, atMs: number) => ({ status: { readyz } as never, atMs });

  it('keeps the newest report and a later unchanged flag, and drops a flag older than the newest report', () => {
    const a = foldStatusChange(undefined, { leaseDurationMs: 1, report: report('ok', 1) });
    const b = foldStatusChange(a, { leaseDurationMs: 1, unchangedAtMs: 2 });
    expect(b).toEqual({ leaseDurationMs: 1, report: report('ok', 1), unchangedAtMs: 2 });
    const c = foldStatusChange(b, { leaseDurationMs: 2, report: report('failed', 3) });
    expect(c).toEqual({ leaseDurationMs: 2, report: report('failed', 3) });
  });

  it('remembers a renewal after expiry until it is written', () => {
    const a = foldStatusChange(undefined, { leaseDurationMs: 1, renewed: true });
    expect(foldStatusChange(a, { leaseDurationMs: 1 })).toEqual({ leaseDurationMs: 1, renewed: true });
    expect(needsWrite({ leaseDurationMs: 1 })).toBe(false);
    expect(needsWrite({ leaseDurationMs: 1, unchangedAtMs: 5 })).toBe(true);
  });
});
