import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ReconnectLoop, type SessionProgress } from '../../src/agent/reconnect.js';
import { defaultBackoffPolicy } from '../../src/tunnel/backoff.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';

// The loop picks the rule for each wait from how the session ended: a busy
// hub's retry-after, a healthy connection's windows, a failed dial's backoff.

type Outcome = { kind: 'busy'; retryAfterMs: number } | { kind: 'healthy-drop' } | { kind: 'failed' };

/** Runs the loop over scripted session outcomes; returns the waits it chose. */
async function run(outcomes: Outcome[]): Promise<Array<{ delayMs: number; retry: string; attempts: number }>> {
  const clock = new ManualClock(0);
  const waits: Array<{ delayMs: number; retry: string; attempts: number }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => {
    const e = JSON.parse(line) as { msg: string; delayMs: number; retry: string; attempts: number };
    if (e.msg === 'agent reconnect wait') waits.push({ delayMs: e.delayMs, retry: e.retry, attempts: e.attempts });
  } });
  let i = 0;
  let loop: ReconnectLoop | undefined = undefined;
  loop = new ReconnectLoop(defaultBackoffPolicy, {
    clock,
    random: () => 0.5,
    logger,
    init: async () => undefined,
    session: async (progress: SessionProgress) => {
      const outcome = outcomes[i++];
      if (outcome === undefined) {
        void loop!.stop();
        return new HawserError(ErrorCode.Cancelled, 'script over');
      }
      if (outcome.kind === 'busy') return new HawserError(ErrorCode.HubBusy, 'busy', { retryAfterMs: outcome.retryAfterMs });
      if (outcome.kind === 'healthy-drop') {
        progress.registering();
        progress.ready('c1');
        progress.heartbeatAcked();
      }
      return new HawserError(ErrorCode.Unavailable, 'dropped');
    },
    interrupt: () => undefined,
    onState: (s) => {
      // Fire each wait's timer as soon as it is set.
      if (s.kind === 'backing-off') queueMicrotask(() => clock.advance(s.delayMs));
    },
  });
  await loop.start();
  return waits;
}

describe('ReconnectLoop chooses the wait by how the session ended', () => {
  it("a busy hub's retry-after is the wait and counts no failed dial; the windows after a drop stay due", async () => {
    const waits = await run([
      { kind: 'healthy-drop' },
      { kind: 'busy', retryAfterMs: 3_000 },
      { kind: 'busy', retryAfterMs: 4_200 },
      { kind: 'failed' },
      { kind: 'failed' },
      { kind: 'failed' },
    ]);
    expect(waits).toEqual([
      { delayMs: 750, retry: 'quick', attempts: 0 },
      { delayMs: 3_000, retry: 'retry-after', attempts: 0 },
      { delayMs: 4_200, retry: 'retry-after', attempts: 0 },
      { delayMs: 2_500, retry: 'second', attempts: 0 },
      { delayMs: 5_000, retry: 'backoff', attempts: 1 },
      { delayMs: 10_000, retry: 'backoff', attempts: 2 },
    ]);
  });

  it('failed dials from the start back off exponentially', async () => {
    const waits = await run([{ kind: 'failed' }, { kind: 'failed' }]);
    expect(waits).toEqual([
      { delayMs: 5_000, retry: 'backoff', attempts: 1 },
      { delayMs: 10_000, retry: 'backoff', attempts: 2 },
    ]);
  });
});
