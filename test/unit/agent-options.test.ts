import { describe, expect, it } from 'vitest';
import { resolveAgentOptions } from '../../src/agent/run.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

describe('agent options: --reconnect-jitter', () => {
  it('defaults to 1.5 s, and a cap below it is still a valid configuration (the window is capped)', () => {
    expect(resolveAgentOptions({ clusterRegName: 'edge-1' }).reconnectJitterMs).toBe(1_500);
    const o = resolveAgentOptions({ clusterRegName: 'edge-1', reconnectPeriodMs: 200, maxReconnectPeriodMs: 1_000 });
    expect(o.reconnectJitterMs).toBe(1_500);
  });

  it('refuses a negative window, naming the flag', () => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', reconnectJitterMs: -1 })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining('reconnect-jitter') }),
    );
  });
});

describe('agent options: sync limits', () => {
  it('default to 1.5 MiB objects (etcd) and a 1 GiB desired-state cache', () => {
    const o = resolveAgentOptions({ clusterRegName: 'edge-1' });
    expect(o.maxObjectBytes).toBe(1.5 * 1024 * 1024);
    expect(o.cacheSizeLimitBytes).toBe(1024 * 1024 * 1024);
  });

  it.each([
    [{ maxObjectBytes: 10 }, 'max-object-bytes'],
    [{ cacheSizeLimitBytes: -1 }, 'cache-size-limit'],
  ])('refuses %j, naming the flag', (partial, flag) => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', ...partial })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining(flag) }),
    );
  });
});
