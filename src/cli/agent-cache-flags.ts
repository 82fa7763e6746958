import type { AgentOptions } from '../agent/index.js';
import { boolFlag, durationFlag, type FlagSpec, intFlag, type Parsed, stringFlag, UsageError } from './flags.js';

// The agent's offline-cache flags, including the names edge-site guides use
// (KubeEdge/OpenYurt style) as aliases:
//   --offline-cache-dir        = --cache-dir (one directory: identity, secret key, LevelDB cache)
//   --offline-cache-enabled    = --enable-cache
// --use-cache-when-disconnected has no older twin. Giving both names of a
// pair with different values is an error naming both.

export const agentCacheFlags: Record<string, FlagSpec> = {
  'cache-dir': { type: 'string', help: 'offline cache directory (identity, credential, secret key, desired state); alias --offline-cache-dir', default: '.hawser/agent' },
  'offline-cache-dir': { type: 'string', help: 'alias of --cache-dir' },
  'enable-cache': {
    type: 'string',
    help: 'keep the desired state across restarts (true) or drop it at start and fetch it again from the hub (false); alias --offline-cache-enabled',
    default: 'true',
  },
  'offline-cache-enabled': { type: 'string', help: 'alias of --enable-cache' },
  'use-cache-when-disconnected': {
    type: 'string',
    help: 'keep reconciling the cached desired state while the hub is unreachable, also after a restart (true), or leave the cluster as it is until the hub is back (false; skipped passes are logged once and counted)',
    default: 'true',
  },
  'cache-size-limit': {
    type: 'string',
    help:
      'bytes the offline cache takes on disk at most (database and quarantines): an object past it is an error on its subscription (HAWSER_SYNC_CACHE_FULL), the database is compacted past it, the oldest quarantines go first; 0: no limit',
    default: '1073741824',
  },
  'cache-max-age': {
    type: 'string',
    help: 'report the cached desired state stale (metric, status, get clusters) when the hub has not confirmed it for this long; it is still reconciled, never removed for its age; 0: never',
    default: '24h',
  },
  'cache-cleanup-interval': { type: 'string', help: "how often the cache's size and age are checked and reported, and it is compacted and its quarantines trimmed to --cache-size-limit", default: '1m' },
};

/** The value of a flag given under either of two names; both with different values: a UsageError naming both. */
function aliased<T>(p: Parsed, name: string, alias: string, read: (flag: string) => T): T {
  const a = stringFlag(p, name);
  const b = stringFlag(p, alias);
  if (a !== undefined && b !== undefined && a !== b) {
    throw new UsageError(`--${name}="${a.slice(0, 64)}" and --${alias}="${b.slice(0, 64)}" are the same setting and disagree: give one`);
  }
  return read(b !== undefined && a === undefined ? alias : name);
}

/** The agent options these flags set. */
export function agentCacheOptions(p: Parsed): Pick<AgentOptions, 'cacheDir' | 'cacheEnabled' | 'useCacheWhenDisconnected' | 'cacheSizeLimitBytes' | 'cacheMaxAgeMs' | 'cacheCleanupIntervalMs'> {
  const cacheDir = aliased(p, 'cache-dir', 'offline-cache-dir', (f) => stringFlag(p, f, '.hawser/agent')!);
  if (cacheDir.trim() === '') throw new UsageError('--cache-dir: "" must name a directory');
  const cleanup = durationFlag(p, 'cache-cleanup-interval', 60_000);
  if (cleanup < 100) throw new UsageError(`--cache-cleanup-interval: "${stringFlag(p, 'cache-cleanup-interval')}" must be at least 100ms`);
  return {
    cacheDir,
    cacheEnabled: aliased(p, 'enable-cache', 'offline-cache-enabled', (f) => boolFlag(p, f, true)),
    useCacheWhenDisconnected: boolFlag(p, 'use-cache-when-disconnected', true),
    cacheSizeLimitBytes: intFlag(p, 'cache-size-limit', 1024 * 1024 * 1024, 0),
    cacheMaxAgeMs: durationFlag(p, 'cache-max-age', 24 * 3600_000),
    cacheCleanupIntervalMs: cleanup,
  };
}
