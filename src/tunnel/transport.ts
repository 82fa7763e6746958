import type { ConnectRequest, ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import type { Inbound } from './codec.js';
import type { HawserError } from './errors.js';

/**
 * One bidirectional frame stream. Hub and agent logic speak only to this;
 * the gRPC and in-memory transports implement it.
 */
export interface FrameChannel<In, Out> {
  /** Resolves once the transport has taken the frame (waits for drain). Rejects when closed. */
  send(frame: Out): Promise<void>;
  /** Inbound frames until the peer ends the stream or it fails. */
  frames(): AsyncIterable<Inbound<In>>;
  /** Ends the stream; an error is delivered to the peer as the reason. */
  close(error?: HawserError): void;
  /** Settles when the stream is over, with the reason if it failed. */
  readonly closed: Promise<HawserError | undefined>;
  /** The remote address as the transport sees it (for logs). */
  readonly peer: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export type HubChannel = FrameChannel<ConnectRequest, ConnectResponse>;
export type AgentChannel = FrameChannel<ConnectResponse, ConnectRequest>;

export interface TunnelListener {
  /** host:port actually bound (port 0 resolved). */
  readonly address: string;
  /** Stops accepting, closes open channels after graceMs. */
  close(graceMs?: number): Promise<void>;
}

export interface ServerTransport {
  listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener>;
}

export interface ClientTransport {
  /** Opens a stream to the hub. Dial failures surface as the channel closing. */
  open(): AgentChannel;
  /** Releases the underlying connection. */
  close(): void;
}
