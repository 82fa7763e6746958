import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { type AgentFrameHandler, AgentSessionRouter, type HubFrame, type UnhandledFrameCounts } from '../../src/agent/router.js';
import { ErrorCode, type HawserError } from '../../src/tunnel/errors.js';
import { waitFor } from './support.js';

// The agent's session router on its own: frames by kind to handlers; a kind no handler takes is logged and counted.

/** A logger that keeps its lines, to check what was logged (and how often). */
function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

const ack = (sequence: number): HubFrame => ({ $case: 'heartbeatAck', value: { sequence, leaseExpiresAtUnixMs: 0 } });
const pending: HubFrame = { $case: 'registrationPending', value: { requestName: 'r', message: 'm' } };

function handler(name: string, kinds: AgentFrameHandler['kinds'], handle: (f: HubFrame) => void | Promise<void>): AgentFrameHandler {
  return { name, kinds, queueLimit: 8, handle };
}

describe('AgentSessionRouter', () => {
  it('hands frames to the handler of their kind', async () => {
    const taken: number[] = [];
    const { logger } = recordingLogger();
    const router = new AgentSessionRouter([handler('heartbeat', ['heartbeatAck'], (f) => void (f.$case === 'heartbeatAck' && taken.push(f.value.sequence)))], {
      fail: () => {
        throw new Error('no failure expected');
      },
      logger,
      unhandled: new Map(),
    });
    for (let i = 1; i <= 3; i++) expect(router.route(ack(i), 5)).toBeUndefined();
    await waitFor('three acks', () => taken.length === 3);
    expect(taken).toEqual([1, 2, 3]);
    await router.close();
  });

  it('logs a kind no handler takes once per session, counts every one, and goes on', async () => {
    const { logger, lines } = recordingLogger();
    const unhandled: UnhandledFrameCounts = new Map();
    const failures: HawserError[] = [];
    const router = new AgentSessionRouter([], { fail: (e) => failures.push(e), logger, unhandled });
    for (let i = 0; i < 5; i++) expect(router.route(pending, 7)).toBeUndefined();
    expect(unhandled.get('registrationPending')).toBe(5);
    expect(lines.filter((l) => l.frame === 'registrationPending')).toHaveLength(1);
    expect(failures).toEqual([]);
    // A new session logs it again; the count goes on.
    const next = new AgentSessionRouter([], { fail: (e) => failures.push(e), logger, unhandled });
    next.route(pending, 7);
    expect(unhandled.get('registrationPending')).toBe(6);
    expect(lines.filter((l) => l.frame === 'registrationPending')).toHaveLength(2);
  });

  it('ends the session with HAWSER_HANDLER_FAILED when a handler throws', async () => {
    const { logger } = recordingLogger();
    const failures: HawserError[] = [];
    const router = new AgentSessionRouter(
      [
        handler('sync', ['registrationPending'], () => {
          throw new Error('cannot apply');
        }),
      ],
      { fail: (e) => failures.push(e), logger, unhandled: new Map() },
    );
    router.route(pending, 7);
    await waitFor('the failure', () => failures.length === 1);
    expect(failures[0]!.code).toBe(ErrorCode.HandlerFailed);
    expect(failures[0]!.message).toContain('sync handler failed on a registrationPending frame: cannot apply');
  });

  it('ends the session with HAWSER_HANDLER_OVERLOADED when a handler falls behind past its queue', () => {
    const { logger } = recordingLogger();
    const router = new AgentSessionRouter([{ name: 'slow', kinds: ['heartbeatAck'], queueLimit: 1, handle: () => new Promise(() => {}) }], {
      fail: () => undefined,
      logger,
      unhandled: new Map(),
    });
    expect(router.route(ack(1), 5)).toBeUndefined(); // in hand
    expect(router.route(ack(2), 5)).toBeUndefined(); // waiting
    expect(router.route(ack(3), 5)?.code).toBe(ErrorCode.HandlerOverloaded);
  });
});
