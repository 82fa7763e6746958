import { describe, expect, it } from 'vitest';
import { resolveHubOptions } from '../../src/hub/index.js';
import { ErrorCode, parseDuration } from '../../src/tunnel/index.js';

describe('resolveHubOptions: registration limits', () => {
  it('defaults to 100 pending per token, 1,000 in total, a 24h pending TTL and 90-day credentials', () => {
    const o = resolveHubOptions({});
    expect(o.maxPendingRegistrationsPerToken).toBe(100);
    expect(o.maxPendingRegistrations).toBe(1_000);
    expect(o.pendingRegistrationTtlMs).toBe(parseDuration('24h', 'ttl'));
    expect(o.credentialTtlMs).toBe(parseDuration('2160h', 'ttl'));
    expect(o.syncChunkBytes).toBe(32 * 1024);
    expect(o.syncInFlightBytes).toBe(48 * 1024);
  });

  it.each([
    [{ credentialTtlMs: 60_000 }, /credential TTL must be at least 1h/],
    [{ pendingRegistrationTtlMs: 1_000 }, /pending registration TTL must be at least 1m/],
    [{ maxPendingRegistrationsPerToken: 0 }, /per token \(0\) must be at least 1/],
    [{ maxPendingRegistrationsPerToken: 50, maxPendingRegistrations: 10 }, /at most the total \(10\)/],
    [{ syncChunkBytes: 100 }, /sync chunk bytes .* got 100/],
    [{ syncChunkBytes: 4 * 1024 * 1024 }, /sync chunk bytes .* got 4194304/],
    [{ syncInFlightBytes: 1000 }, /sync in-flight bytes .* got 1000/],
  ])('refuses %j, naming the limit', (partial, message) => {
    const thrown = (() => {
      try {
        resolveHubOptions(partial);
      } catch (err) {
        return err as Error & { code?: string };
      }
      return undefined;
    })();
    expect(thrown?.code).toBe(ErrorCode.InvalidOption);
    expect(thrown?.message).toMatch(message);
  });
});
