export { ErrorCode, HawserError, isAuthFailure, isErrorCode, isPermanent, needsOperator, toHawserError } from './errors.js';
export { type Clock, type TimerHandle, ManualClock, systemClock } from './clock.js';
export {
  Backoff,
  type BackoffPolicy,
  backoffCeilingMs,
  backoffDelayMs,
  defaultBackoffPolicy,
  quickRetryDelayMs,
  retryAfterFloorMs,
} from './backoff.js';
export { agentFrameCodec, defaultMaxFrameBytes, hubFrameCodec, type FrameCodec, type Inbound } from './codec.js';
export type {
  AgentChannel,
  AgentConnection,
  AgentConnectionTestHooks,
  AgentOpenStreamOptions,
  ByteStream,
  ClientTransport,
  ConnectionClientTransport,
  ConnectionServerTransport,
  FrameChannel,
  HubChannel,
  HubConnection,
  OpenStreamOptions,
  ServerTransport,
  ServerTransportEvents,
  StreamAcceptor,
  StreamRequest,
  TunnelListener,
} from './transport.js';
export { maxStreamChunkBytes, streamReadBufferBytes, streamWriteBufferBytes } from './streams.js';
export { MemoryTransport, type MemoryTransportOptions, memoryChannelPair } from './memory.js';
export {
  GrpcClientTransport,
  type GrpcClientOptions,
  GrpcServerTransport,
  type GrpcServerOptions,
  defaultMaxConcurrentStreams,
  defaultTlsHandshakeTimeoutMs,
  grpcMaxStreamWindowBytes,
  hawserErrorFromStatus,
} from './grpc.js';
export {
  assertCertificatePem,
  type CertificateAuthority,
  createCertificateAuthority,
  createServingCertificate,
  type ServingCertificate,
} from './tls.js';
export {
  type CertificateSummary,
  defaultTrustBundleLimits,
  splitPemBundle,
  summarizeCertificate,
  type TrustBundleLimits,
  validateTrustBundle,
} from './trust.js';
export { parseDuration, formatDuration } from './duration.js';
export { bootstrapTokenPattern, parseBootstrapTokens } from './bootstrap-token.js';
export { type CaseFrame, type FrameHandler, FrameRouter, type RouteResult } from './router.js';
export {
  acceptWelcome,
  Feature,
  localOffer,
  maxOfferedFeatures,
  minProtocolVersion,
  negotiate,
  type Negotiated,
  type ProtocolOffer,
  protocolVersion,
} from './negotiate.js';
export {
  type AgentKeyPair,
  generateAgentKeyPair,
  helloProofSubject,
  type ProofPurpose,
  type ProofSubject,
  proofSignatureValid,
  publicKeyFingerprint,
  signHello,
  signProof,
} from './proof.js';
export * as wire from '../gen/hawser/v1/tunnel.js';
export { contentSha256, desiredSetDigest, syncObjectId } from './sync-digest.js';
export {
  bodyAfter,
  decodeRequestHead,
  drained,
  encodeRequestHead,
  encodeResponseHead,
  type HeadRead,
  maxProxyHeadBytes,
  proxyStreamKind,
  readRequestHead,
  readResponseHead,
} from './proxy.js';
export * as proxyWire from '../gen/hawser/v1/proxy.js';
export { forwardedRequestHeaders, forwardedResponseHeaders, isUpgradeRequest, refusalAsText } from './proxy-headers.js';
export { syncDictionary } from './sync-dictionary.js';
export { type CompressedFrames, compressionWindowBytes, FrameCompressor, FrameDecompressor } from './compression.js';
export { agentFramePriority, hubFramePriority, PrioritySender, type SendPriority } from './queue.js';
