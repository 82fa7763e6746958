export { CacheCorruptError, OfflineCache, type OfflineCacheOptions } from './cache.js';
