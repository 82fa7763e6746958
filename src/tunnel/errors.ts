// Every refusal hawser makes carries one of these codes. Tests and callers
// match on the code; the message names the thing that was wrong.
export const ErrorCode = {
  BadBootstrapToken: 'HAWSER_BAD_BOOTSTRAP_TOKEN',
  BadCredential: 'HAWSER_BAD_CREDENTIAL',
  CredentialClusterMismatch: 'HAWSER_CREDENTIAL_CLUSTER_MISMATCH',
  MalformedFrame: 'HAWSER_MALFORMED_FRAME',
  OversizedFrame: 'HAWSER_OVERSIZED_FRAME',
  UnexpectedFrame: 'HAWSER_UNEXPECTED_FRAME',
  InvalidRegistration: 'HAWSER_INVALID_REGISTRATION',
  RegistrationDenied: 'HAWSER_REGISTRATION_DENIED',
  ClusterNameTaken: 'HAWSER_CLUSTER_NAME_TAKEN',
  AlreadyRegistered: 'HAWSER_ALREADY_REGISTERED',
  RegistrationTimeout: 'HAWSER_REGISTRATION_TIMEOUT',
  Superseded: 'HAWSER_SESSION_SUPERSEDED',
  HubShuttingDown: 'HAWSER_HUB_SHUTTING_DOWN',
  Unavailable: 'HAWSER_UNAVAILABLE',
  HeartbeatTimeout: 'HAWSER_HEARTBEAT_TIMEOUT',
  Cancelled: 'HAWSER_CANCELLED',
  InvalidOption: 'HAWSER_INVALID_OPTION',
  NotFound: 'HAWSER_NOT_FOUND',
  Internal: 'HAWSER_INTERNAL',
  /** A hello without a valid proof of possession of its key (bad signature, stale time). */
  BadSignature: 'HAWSER_BAD_SIGNATURE',
  /** A hello's signed nonce was seen before: a replay. */
  SignatureReplayed: 'HAWSER_SIGNATURE_REPLAYED',
  /** The cluster id is bound to another key: only its original agent may act as it. */
  KeyMismatch: 'HAWSER_KEY_MISMATCH',
  /** Pending registrations are at their cap (per bootstrap token or in total). */
  TooManyPendingRegistrations: 'HAWSER_TOO_MANY_PENDING_REGISTRATIONS',
  /** A pending registration request outlived its TTL without a decision. */
  RegistrationExpired: 'HAWSER_REGISTRATION_EXPIRED',
  /** An operator deleted the cluster (`hawser delete cluster`). */
  ClusterDeleted: 'HAWSER_CLUSTER_DELETED',
  /** The offline cache (LevelDB) is damaged; the agent quarantines it. */
  CacheCorrupt: 'HAWSER_CACHE_CORRUPT',
  /** The agent's identity file is damaged and no copy holds the identity. */
  IdentityCorrupt: 'HAWSER_IDENTITY_CORRUPT',
  /** A durable write to the agent's cache failed (e.g. a full disk). */
  CacheWriteFailed: 'HAWSER_CACHE_WRITE_FAILED',
  /** The agent's cached desired state is older than --cache-max-age (unconfirmed by the hub): reported, still reconciled, never removed for it. */
  CacheStale: 'HAWSER_CACHE_STALE',
  /** Quarantined cache data removed because the quarantines passed their cap. */
  CacheQuarantineDropped: 'HAWSER_CACHE_QUARANTINE_DROPPED',
  /** Too many failed authentication attempts from one peer address; retry after the given delay. */
  RateLimited: 'HAWSER_RATE_LIMITED',
  /** Heartbeats faster than any agent sends them. */
  HeartbeatFlood: 'HAWSER_HEARTBEAT_FLOOD',
  /** A status report over the hub's size bound. */
  StatusTooLarge: 'HAWSER_STATUS_TOO_LARGE',
  /** Too many streams that have not yet been welcomed; retry after the given delay. */
  HubBusy: 'HAWSER_HUB_BUSY',
  /** The hub's disk is full: nothing could be stored; retry after the given delay. */
  StorageFull: 'HAWSER_STORAGE_FULL',
  /** The hub's certificate is not signed by the CA the agent was given. */
  UntrustedHub: 'HAWSER_UNTRUSTED_HUB',
  /** An HTTP request path that is not valid percent-encoding. */
  MalformedPath: 'HAWSER_MALFORMED_PATH',
  /** An HTTP method the endpoint does not serve. */
  MethodNotAllowed: 'HAWSER_METHOD_NOT_ALLOWED',
  // Resources applied to the hub (src/api validate.ts, documents.ts; src/hub resources.ts).
  /** An object that fails its kind's schema; the message names the field and the value. */
  InvalidObject: 'HAWSER_INVALID_OBJECT',
  /** A kind that its known group/version does not have ("apps/v1 has no kind Service"). */
  UnknownKind: 'HAWSER_UNKNOWN_KIND',
  /** A version that a known group (Kubernetes v1.33, Clusternet) does not serve. */
  UnknownApiVersion: 'HAWSER_UNKNOWN_API_VERSION',
  /** A Subscription (or Base) naming more feeds than the hub's bound. */
  TooManyFeeds: 'HAWSER_TOO_MANY_FEEDS',
  /** An object larger than the hub's object limit (--max-object-bytes). */
  ObjectTooLarge: 'HAWSER_OBJECT_TOO_LARGE',
  /** A kind the hub writes itself (Base, Manifest, ManagedCluster, …): not applied. */
  ReadOnlyKind: 'HAWSER_READ_ONLY_KIND',
  /** Text that is not YAML or JSON; nothing of it is applied. */
  InvalidYaml: 'HAWSER_INVALID_YAML',
  /** More documents in one apply than the hub takes at once. */
  TooManyDocuments: 'HAWSER_TOO_MANY_DOCUMENTS',
  /** A Localization in a namespace that is no registered cluster's dedicated namespace. */
  UnknownClusterNamespace: 'HAWSER_UNKNOWN_CLUSTER_NAMESPACE',
  /** An apply request body over the hub's bound. */
  RequestTooLarge: 'HAWSER_REQUEST_TOO_LARGE',
  // Operators' HTTP API and the hub's start-up.
  Unauthenticated: 'HAWSER_UNAUTHENTICATED',
  Forbidden: 'HAWSER_FORBIDDEN',
  InvalidBootstrapToken: 'HAWSER_INVALID_BOOTSTRAP_TOKEN',
  InvalidOperatorTokens: 'HAWSER_INVALID_OPERATOR_TOKENS',
  /** A valid operator token on a cluster outside that operator's cluster scope (403). */
  ClusterOutOfScope: 'HAWSER_CLUSTER_OUT_OF_SCOPE',
  DataDirInUse: 'HAWSER_DATA_DIR_IN_USE',
  DataDirNotDirectory: 'HAWSER_DATA_DIR_NOT_DIRECTORY',
  DataDirUnwritable: 'HAWSER_DATA_DIR_UNWRITABLE',
  // The hawser CLI's own config (~/.hawser/config).
  CliConfigInvalid: 'HAWSER_CLI_CONFIG_INVALID',
  HubUnreachable: 'HAWSER_HUB_UNREACHABLE',
  // Certificate rotation.
  /** A trust bundle that is not a bounded list of PEM CA certificates: refused, the old trust kept. */
  InvalidTrustBundle: 'HAWSER_INVALID_TRUST_BUNDLE',
  /** A CA rotation step out of order, e.g. retiring the CA that still signs the serving certificate. */
  RotationIncomplete: 'HAWSER_ROTATION_INCOMPLETE',
  /** The hub serves an operator-supplied certificate (--tls-cert-file): the operator rotates it. */
  PkiUnmanaged: 'HAWSER_PKI_UNMANAGED',
  // Request streams on an agent's connection.
  /** A stream names no live session of its own connection (a token from elsewhere, or a session that ended). */
  StreamUnbound: 'HAWSER_STREAM_UNBOUND',
  /** The session does not take this stream: not yet authenticated, not requested, a bad kind or id. */
  StreamRefused: 'HAWSER_STREAM_REFUSED',
  /** The stream's session (its control stream) ended, and with it the stream. */
  SessionEnded: 'HAWSER_SESSION_ENDED',
  /** A deadline (an AbortSignal.timeout) passed. */
  DeadlineExceeded: 'HAWSER_DEADLINE_EXCEEDED',
  // The proxy (kubectl through the hub).
  /** The cluster's agent is not connected: the proxy answers 503 at once, saying since when. */
  ClusterOffline: 'HAWSER_CLUSTER_OFFLINE',
  /** The cluster's agent did not negotiate proxy streams (an older agent): upgrade it. */
  ProxyUnsupported: 'HAWSER_PROXY_UNSUPPORTED',
  /** The agent could not reach the proxied request's target (its kube-apiserver, or HOST:PORT). */
  ProxyUpstream: 'HAWSER_PROXY_UPSTREAM',
  /** A proxy head that breaks the protocol (too large, not decodable, a bad target). */
  ProxyProtocol: 'HAWSER_PROXY_PROTOCOL',
  /** The agent will not impersonate this user or group (its --proxy-impersonate-* policy: a system: name only when listed exactly; or none at all): 403. */
  ImpersonationRefused: 'HAWSER_IMPERSONATION_REFUSED',
  // Sessions.
  /** Hub and agent share no protocol version (or the hub chose what the agent never offered): upgrade one side. */
  ProtocolIncompatible: 'HAWSER_PROTOCOL_INCOMPATIBLE',
  /** A session handler's queue is full: the peer sends faster than the hub can take its frames. */
  HandlerOverloaded: 'HAWSER_HANDLER_OVERLOADED',
  /** A session handler failed on a frame; the session ends. */
  HandlerFailed: 'HAWSER_HANDLER_FAILED',
  // The agent's apply engine (per object, in its report).
  /** A desired object without apiVersion, kind or metadata.name, or with a bad subscription tag. */
  InvalidManifest: 'HAWSER_INVALID_MANIFEST',
  /** The API server refused the object (invalid field, forbidden, ...): its message is in the report. */
  ApplyRejected: 'HAWSER_APPLY_REJECTED',
  /** The cluster serves no such kind: for a custom kind, its CRD is not in the cluster. */
  KindNotServed: 'HAWSER_KIND_NOT_SERVED',
  /** A CRD applied in the same set did not become Established within the bound. */
  CrdNotEstablished: 'HAWSER_CRD_NOT_ESTABLISHED',
  /** A field is also managed by another hawser cluster id with another value: neither overwrites the other. */
  ApplyConflict: 'HAWSER_APPLY_CONFLICT',
  /** A prune that would take others' objects with it (a CRD whose custom resources are not all ours): kept. */
  PruneBlocked: 'HAWSER_PRUNE_BLOCKED',
  // Rendering subscriptions into per-cluster manifests (src/hub/render).
  /** A Localization's or Globalization's override could not apply to an object; its previous rendering stays. */
  OverrideFailed: 'HAWSER_OVERRIDE_FAILED',
  /** A feed or override that is stored but not built yet (HelmChart feeds, Helm overrides). */
  Unsupported: 'HAWSER_UNSUPPORTED',
  /** An object a feed names could not be rendered (an unreadable Description raw object, two feeds yielding one object). */
  RenderFailed: 'HAWSER_RENDER_FAILED',
  // Scheduling (src/scheduler returns these codes; it imports nothing from here).
  /** A subscription's scheduling fields are invalid (the message names the field). */
  InvalidScheduling: 'HAWSER_INVALID_SCHEDULING',
  /** No cluster matches a subscriber and tolerates its taints. */
  NoMatchingClusters: 'HAWSER_NO_MATCHING_CLUSTERS',
  /** dynamicDividing.minClusters is more than the clusters that can be selected. */
  MinClustersNotMet: 'HAWSER_MIN_CLUSTERS_NOT_MET',
  /** The clusters' free capacity cannot hold the replicas to divide. */
  InsufficientCapacity: 'HAWSER_INSUFFICIENT_CAPACITY',
  /** topologySpreadConstraints (DoNotSchedule) allow no cluster for a replica. */
  TopologyUnsatisfiable: 'HAWSER_TOPOLOGY_UNSATISFIABLE',
  // The hub store (src/hub/store).
  /** A conditional write whose expected resourceVersion (or absence) did not hold: nothing was written. */
  StoreConflict: 'HAWSER_STORE_CONFLICT',
  /** A watch from a version older than the store's kept history: list again, then watch from the list's version. */
  ResourceVersionTooOld: 'HAWSER_RESOURCE_VERSION_TOO_OLD',
  /** A version the store has not reached (e.g. it was restored from a backup): list again. */
  ResourceVersionTooNew: 'HAWSER_RESOURCE_VERSION_TOO_NEW',
  /** A resourceVersion that is not a decimal number. */
  InvalidResourceVersion: 'HAWSER_INVALID_RESOURCE_VERSION',
  /** An object key the store cannot hold (empty name, a feed without apiVersion/kind). */
  InvalidStoreKey: 'HAWSER_INVALID_STORE_KEY',
  /** The store was closed (ends watches, refuses calls). */
  StoreClosed: 'HAWSER_STORE_CLOSED',
  // Encryption at rest (src/cache seal).
  /** A sealed value was sealed with another key than the one loaded. */
  SealKeyMismatch: 'HAWSER_SEAL_KEY_MISMATCH',
  /** A sealed value fails authentication (changed on disk, or moved to another object's key). */
  SealTampered: 'HAWSER_SEAL_TAMPERED',
  /** A sealed value in a format version this build does not know. */
  SealUnsupported: 'HAWSER_SEAL_UNSUPPORTED',
  /** The secret key file may be read by others (mode wider than 0600): refused. */
  SecretKeyFileInsecure: 'HAWSER_SECRET_KEY_FILE_INSECURE',
  /** The secret key file is not a key (wrong length or not a regular file): refused. */
  SecretKeyFileInvalid: 'HAWSER_SECRET_KEY_FILE_INVALID',
  // Sync over the tunnel (src/hub/sync, src/agent/sync*).
  /** An object larger than the hub's or the agent's --max-object-bytes (or one frame, without "chunks"): not sent, reported on its subscription. */
  SyncObjectTooLarge: 'HAWSER_SYNC_OBJECT_TOO_LARGE',
  /** An object would take the agent's desired state past --cache-size-limit: not stored (the older copy stays), reported on its subscription. */
  SyncCacheFull: 'HAWSER_SYNC_CACHE_FULL',
  /** A reassembled chunked object does not match its checksum or size: the chunks are discarded and the object fetched again from its start. */
  SyncChecksumMismatch: 'HAWSER_SYNC_CHECKSUM_MISMATCH',
  /** A sync frame that breaks the protocol (bad checksum, unknown encoding, an ack for nothing sent). */
  SyncProtocol: 'HAWSER_SYNC_PROTOCOL',
  /** Compressed sync frames that would inflate past the receiver's limit (a decompression bomb): refused, the session ends. */
  SyncDecompressionLimit: 'HAWSER_SYNC_DECOMPRESSION_LIMIT',
  /** An agent's hello resumed behind a revision it had acknowledged as durable (its cache lost sync state): counted, then synced from where it stands. */
  SyncAckedRevisionLost: 'HAWSER_SYNC_ACKED_REVISION_LOST',
  /** The agent keeps objects a snapshot would remove and does not prune until an operator confirms. */
  SyncPruneHeld: 'HAWSER_SYNC_PRUNE_HELD',
  /** A prune confirmation names a hold the cluster no longer has (or never had): nothing is released. */
  PruneConfirmStale: 'HAWSER_PRUNE_CONFIRM_STALE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));

export class HawserError extends Error {
  override readonly name = 'HawserError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options?.retryAfterMs ?? 0;
  }
  readonly retryAfterMs: number;

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return knownCodes.has(value);
}

/** Codes that say retrying with the same input cannot help. */
export function isPermanent(code: ErrorCode): boolean {
  return (
    code === ErrorCode.BadBootstrapToken ||
    code === ErrorCode.BadCredential ||
    code === ErrorCode.CredentialClusterMismatch ||
    code === ErrorCode.InvalidRegistration ||
    code === ErrorCode.RegistrationDenied ||
    code === ErrorCode.ClusterNameTaken ||
    code === ErrorCode.AlreadyRegistered ||
    code === ErrorCode.KeyMismatch ||
    code === ErrorCode.ClusterDeleted
  );
}

/**
 * Codes that mean a peer presented a secret that did not check out. These are
 * what the hub rate-limits per peer address.
 */
export function isAuthFailure(code: ErrorCode): boolean {
  return (
    code === ErrorCode.BadBootstrapToken ||
    code === ErrorCode.BadCredential ||
    code === ErrorCode.CredentialClusterMismatch ||
    code === ErrorCode.BadSignature ||
    code === ErrorCode.SignatureReplayed ||
    code === ErrorCode.KeyMismatch
  );
}

/**
 * Codes only an operator can fix (a wrong CA file). Retrying cannot help until
 * then, so the agent keeps trying, but only at its backoff cap.
 */
export function needsOperator(code: ErrorCode): boolean {
  return code === ErrorCode.UntrustedHub || code === ErrorCode.ProtocolIncompatible;
}

export function toHawserError(err: unknown, fallback: ErrorCode = ErrorCode.Internal): HawserError {
  if (err instanceof HawserError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HawserError(fallback, message, { cause: err });
}
