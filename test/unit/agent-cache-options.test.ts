import { describe, expect, it } from 'vitest';
import { isStale } from '../../src/agent/cache-monitor.js';
import { resolveAgentOptions } from '../../src/agent/run.js';
import { agentCacheOptions } from '../../src/cli/agent-cache-flags.js';
import { parseFlags, UsageError } from '../../src/cli/flags.js';
import { agentSpec } from '../../src/cli/agent-command.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

const cacheOptions = (...argv: string[]) => agentCacheOptions(parseFlags(agentSpec, argv));

describe('agent cache flags', () => {
  it('default: cache on, used when disconnected, 1 GiB, stale after 24h, checked every minute', () => {
    expect(cacheOptions()).toEqual({
      cacheDir: '.hawser/agent',
      cacheEnabled: true,
      useCacheWhenDisconnected: true,
      cacheSizeLimitBytes: 1024 * 1024 * 1024,
      cacheMaxAgeMs: 24 * 3600_000,
      cacheCleanupIntervalMs: 60_000,
    });
    const o = resolveAgentOptions({ clusterRegName: 'edge-1' });
    expect([o.cacheEnabled, o.useCacheWhenDisconnected, o.cacheMaxAgeMs, o.cacheCleanupIntervalMs]).toEqual([true, true, 24 * 3600_000, 60_000]);
  });

  it('the edge-site names are aliases: --offline-cache-dir of --cache-dir, --offline-cache-enabled of --enable-cache', () => {
    expect(cacheOptions('--offline-cache-dir=/var/lib/hawser').cacheDir).toBe('/var/lib/hawser');
    expect(cacheOptions('--offline-cache-enabled=false').cacheEnabled).toBe(false);
    expect(cacheOptions('--enable-cache=false').cacheEnabled).toBe(false);
    expect(cacheOptions('--cache-dir=/a', '--offline-cache-dir=/a').cacheDir).toBe('/a');
    expect(cacheOptions('--use-cache-when-disconnected=false').useCacheWhenDisconnected).toBe(false);
    expect(cacheOptions('--cache-max-age=0', '--cache-cleanup-interval=5s')).toMatchObject({ cacheMaxAgeMs: 0, cacheCleanupIntervalMs: 5_000 });
  });

  it.each([
    [['--enable-cache=yes'], '--enable-cache', 'yes'],
    [['--offline-cache-enabled=1'], '--offline-cache-enabled', '1'],
    [['--use-cache-when-disconnected=maybe'], '--use-cache-when-disconnected', 'maybe'],
    [['--cache-max-age=soon'], '--cache-max-age', 'soon'],
    [['--cache-max-age=-1h'], '--cache-max-age', '-1h'],
    [['--cache-cleanup-interval=10'], '--cache-cleanup-interval', '10'],
    [['--cache-cleanup-interval=10ms'], '--cache-cleanup-interval', '10ms'],
    [['--cache-size-limit=1GB'], '--cache-size-limit', '1GB'],
    [['--cache-size-limit=-5'], '--cache-size-limit', '-5'],
    [['--cache-dir='], '--cache-dir', '""'],
    [['--cache-dir=/a', '--offline-cache-dir=/b'], '--offline-cache-dir', '/b'],
    [['--enable-cache=true', '--offline-cache-enabled=false'], '--offline-cache-enabled', 'false'],
  ])('%j is refused with an error naming the flag and the value', (argv, flag, value) => {
    const err = (() => {
      try {
        cacheOptions(...argv);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(flag);
    expect((err as Error).message).toContain(value);
  });

  it.each([
    [{ cacheMaxAgeMs: -1 }, 'cache-max-age'],
    [{ cacheCleanupIntervalMs: 10 }, 'cache-cleanup-interval'],
  ])('resolveAgentOptions refuses %j, naming the option', (partial, flag) => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', ...partial })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining(flag) }),
    );
  });
});

describe('isStale', () => {
  it('is stale only past maxAge, never with maxAge 0', () => {
    expect(isStale(1_000, 61_000, 60_000)).toBe(false);
    expect(isStale(1_000, 61_001, 60_000)).toBe(true);
    expect(isStale(0, Number.MAX_SAFE_INTEGER, 0)).toBe(false);
  });
});
