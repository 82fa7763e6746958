export { CacheCorruptError, OfflineCache, type OfflineCacheOptions } from './cache.js';
export { ensurePrivateDir, syncDir, writeFileAtomic } from './files.js';
