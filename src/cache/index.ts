export { type CacheOp, CacheCorruptError, type CacheQuarantine, type CacheRange, type CacheView, type CorruptEntry, OfflineCache, type OfflineCacheOptions, type QuarantineFile, type ScanResult } from './cache.js';
export { ensurePrivateDir, syncDir, writeFileAtomic } from './files.js';
export { loadOrCreateSealKey, loadSealKey, SealError, type SealErrorCode, SealKey, sealKeyBytes } from './seal.js';
