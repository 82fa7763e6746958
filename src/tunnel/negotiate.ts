import { ErrorCode, HawserError } from './errors.js';

// Protocol versioning. Each side speaks a range of protocol versions
// [min, max] and a set of optional features. A session speaks the newest
// version in both ranges and uses only the features both sides named, so a
// newer hub keeps serving an older agent with what both have. A peer from
// before versioning sends 0: it is served as protocol 1 with no features.

/** The newest protocol version this build speaks. */
export const protocolVersion = 1;
/** The oldest protocol version this build still speaks. */
export const minProtocolVersion = 1;

/** Optional features a session may use, once both sides name them. */
export const Feature = {
  /** Revisioned manifest sync over the tunnel. */
  Sync: 'sync',
  /**
   * Sync frames compressed in one context per session: raw DEFLATE with the
   * dictionary of src/tunnel/sync-dictionary.ts, whose id ends the name.
   */
  CompressionDeflate: 'compression.deflate.k8s1',
  /** Large objects in resumable chunks. */
  Chunks: 'chunks',
  /** Proxied requests each on their own stream (openStream). */
  ProxyStreams: 'proxy-streams',
  /**
   * A whole (unchunked) SyncObject travels without content_sha256: TLS and the
   * CRC-32 of each compressed run guard it on the way, and the agent computes
   * the sha256 itself on receipt. Chunks keep it (they are reassembled across
   * connections). Saves the 64 hex digits no compressor shrinks (bench/sync).
   */
  LocalDigest: 'sync.local-digest',
  /** A proxied request's head rides in its OpenStream (prelude): the agent starts it before the stream is open. */
  ProxyPrelude: 'proxy-prelude',
  /**
   * The agent keeps a few idle "proxy" streams open ahead (StreamAcceptor.pools):
   * a request takes one and writes its head on it, with no OpenStream round
   * trip and no gRPC call set up while it waits.
   */
  ProxyPool: 'proxy-pool',
  /**
   * Apply reports in parts of at most 16 KiB, each acknowledged, carrying only
   * the rows changed since the report the hub acknowledged last on the
   * session (ApplyReport.part, ApplyReportAck).
   */
  ReportDelta: 'apply-report.delta',
} as const;
export type Feature = (typeof Feature)[keyof typeof Feature];

/** What one side offers: its version range and the features it supports. */
export interface ProtocolOffer {
  /** Newest version; 0 means a peer from before versioning (served as 1). */
  protocolVersion: number;
  /** Oldest version; 0 means the same as protocolVersion. */
  minProtocolVersion: number;
  features: readonly string[];
}

/** What a session speaks, recorded on it so handlers can check a feature before using it. */
export interface Negotiated {
  protocolVersion: number;
  features: ReadonlySet<string>;
}

/** A peer naming more features than this is only read this far (untrusted input stays bounded). */
export const maxOfferedFeatures = 64;

/** This build's own offer, with the features it is configured to use. */
export function localOffer(features: readonly string[]): ProtocolOffer {
  return { protocolVersion, minProtocolVersion, features };
}

function range(offer: ProtocolOffer): { min: number; max: number } {
  // Before versioning there was one protocol: 1.
  const max = offer.protocolVersion > 0 ? offer.protocolVersion : 1;
  const min = offer.minProtocolVersion > 0 ? Math.min(offer.minProtocolVersion, max) : max;
  return { min, max };
}

/**
 * The hub's answer to an agent's offer: the newest version both speak and the
 * features both named, in the hub's order. Throws HAWSER_PROTOCOL_INCOMPATIBLE
 * when the two ranges do not overlap. Pure.
 */
export function negotiate(hub: ProtocolOffer, agent: ProtocolOffer): Negotiated {
  const h = range(hub);
  const a = range(agent);
  const version = Math.min(h.max, a.max);
  if (version < Math.max(h.min, a.min)) {
    const older = a.max < h.min ? 'agent' : 'hub';
    throw new HawserError(
      ErrorCode.ProtocolIncompatible,
      `agent speaks protocol versions ${a.min}..${a.max} and hub ${h.min}..${h.max}: no common version; upgrade the ${older}`,
    );
  }
  // Features of an agent from before versioning are ignored: it cannot have any.
  const offered = agent.protocolVersion > 0 ? new Set(agent.features.slice(0, maxOfferedFeatures)) : new Set<string>();
  const features = new Set(hub.features.filter((f) => offered.has(f)));
  return { protocolVersion: version, features };
}

/**
 * The agent's check of a welcome: the hub chose a version and features. The
 * version must lie in the agent's range and every feature be one it offered;
 * otherwise HAWSER_PROTOCOL_INCOMPATIBLE. A welcome from a hub before
 * versioning (0) is protocol 1 with no features. Pure.
 */
export function acceptWelcome(agent: ProtocolOffer, welcome: { protocolVersion: number; features: readonly string[] }): Negotiated {
  const a = range(agent);
  const version = welcome.protocolVersion > 0 ? welcome.protocolVersion : 1;
  if (version < a.min || version > a.max) {
    throw new HawserError(
      ErrorCode.ProtocolIncompatible,
      `hub chose protocol version ${version}; this agent speaks ${a.min}..${a.max}: upgrade the ${version > a.max ? 'agent' : 'hub'}`,
    );
  }
  const offered = new Set(agent.features);
  const unasked = welcome.features.filter((f) => !offered.has(f));
  if (unasked.length > 0) {
    throw new HawserError(
      ErrorCode.ProtocolIncompatible,
      `hub chose features this agent did not offer: ${unasked.slice(0, 8).map((f) => JSON.stringify(f.slice(0, 64))).join(', ')}`,
    );
  }
  return { protocolVersion: version, features: new Set(welcome.features) };
}
