import type { Clock } from '../tunnel/index.js';

// Token buckets on an injected clock: a heartbeat budget per session, and a
// budget of failed authentication attempts per peer address.

export interface BucketPolicy {
  /** Tokens the bucket holds when full (the burst). */
  readonly capacity: number;
  /** Tokens added per second. */
  readonly refillPerSecond: number;
}

/** One token bucket. Pure apart from the clock it reads. */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    readonly policy: BucketPolicy,
    private readonly clock: Clock,
  ) {
    if (!(policy.capacity >= 1) || !(policy.refillPerSecond > 0)) {
      throw new RangeError(`a token bucket needs capacity >= 1 (${policy.capacity}) and refill > 0 (${policy.refillPerSecond})`);
    }
    this.tokens = policy.capacity;
    this.updatedAt = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.policy.capacity, this.tokens + (elapsed * this.policy.refillPerSecond) / 1000);
    this.updatedAt = now;
  }

  /** Takes one token if there is one. */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until one token is available (0 when one is). */
  msUntilToken(): number {
    this.refill();
    if (this.tokens >= 1) return 0;
    return Math.ceil(((1 - this.tokens) * 1000) / this.policy.refillPerSecond);
  }

  /** True when the bucket is full again: nothing about it is worth remembering. */
  get isFull(): boolean {
    this.refill();
    return this.tokens >= this.policy.capacity;
  }
}

export interface FailureLimiterOptions extends BucketPolicy {
  /** Peers remembered at most; the least recently failing are forgotten first. */
  readonly maxPeers: number;
}

/** Defaults: a burst of 10 failures, then one every 6 s (10 a minute), per address. */
export const defaultFailureLimiterOptions: FailureLimiterOptions = {
  capacity: 10,
  refillPerSecond: 1 / 6,
  maxPeers: 10_000,
};

/**
 * Failed authentication attempts per peer address. Only failures spend the
 * budget: many sites share one address behind carrier NAT, and one of them
 * guessing must never slow the others' valid credentials.
 */
export class FailureLimiter {
  // A Map iterates in insertion order; re-inserting on each failure keeps it LRU.
  private readonly peers = new Map<string, TokenBucket>();

  constructor(
    readonly options: FailureLimiterOptions,
    private readonly clock: Clock,
  ) {
    if (!(options.maxPeers >= 1)) throw new RangeError(`maxPeers must be at least 1, got ${options.maxPeers}`);
  }

  /** Milliseconds this peer must wait before its next attempt is checked; 0 when it may try now. */
  retryAfterMs(peer: string): number {
    const bucket = this.peers.get(peer);
    if (!bucket) return 0;
    const wait = bucket.msUntilToken();
    if (wait === 0 && bucket.isFull) this.peers.delete(peer);
    return wait;
  }

  /** Records a failure; returns how long the peer must now wait (0 while it has budget left). */
  recordFailure(peer: string): number {
    let bucket = this.peers.get(peer);
    if (bucket) this.peers.delete(peer);
    else bucket = new TokenBucket(this.options, this.clock);
    this.peers.set(peer, bucket);
    bucket.take();
    while (this.peers.size > this.options.maxPeers) {
      const oldest = this.peers.keys().next().value as string;
      this.peers.delete(oldest);
    }
    return bucket.msUntilToken();
  }

  get trackedPeers(): number {
    return this.peers.size;
  }
}

/**
 * The address part of a transport peer ("10.0.0.7:51234", "[::1]:51234",
 * "ipv4:10.0.0.7:51234"): connections from one host share one budget.
 */
export function peerAddress(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(bare);
  if (bracketed) return bracketed[1]!;
  const colons = bare.split(':').length - 1;
  // One colon: host:port. More: an IPv6 address without brackets (no port to strip).
  if (colons === 1) return bare.slice(0, bare.lastIndexOf(':'));
  return bare;
}
