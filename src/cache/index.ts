export { type CacheOp, CacheCorruptError, type CacheRange, type CacheView, OfflineCache, type OfflineCacheOptions } from './cache.js';
export { ensurePrivateDir, syncDir, writeFileAtomic } from './files.js';
export { loadOrCreateSealKey, loadSealKey, SealError, type SealErrorCode, SealKey, sealKeyBytes } from './seal.js';
