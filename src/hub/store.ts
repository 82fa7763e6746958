// The hub store's door: the interface (store/types.ts), its keys and versions
// (store/keys.ts), the embedded LevelDB store and the layer that seals Secrets.
export type {
  ClusterCredentialRecord,
  Entry,
  FeedKey,
  HubStore,
  KeyOf,
  KubeObject,
  ListOptions,
  ListResult,
  ObjectKey,
  Precondition,
  ResourceVersion,
  StoreInfo,
  StoreOp,
  StoredKeyOf,
  StoredKind,
  StoredKinds,
  WatchEvent,
  WatchEventType,
  WatchOptions,
  WriteOptions,
} from './store/types.js';
export { storedKinds, storedKindTypes } from './store/types.js';
export { compareResourceVersions, decodeKey, encodeKey, keyOfObject, normalizeKey, parseResourceVersion } from './store/keys.js';
export { holdsSecret, type SealPredicate, SealingStore, sealsSecrets } from './store/sealing.js';
export { defaultEmbeddedStoreOptions, EmbeddedStore, type EmbeddedStoreOptions } from './store/embedded.js';
