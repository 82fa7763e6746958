import type { ConnectRequest, ConnectResponse } from '../gen/hawser/v1/tunnel.js';
import { agentFrameCodec, hubFrameCodec, type FrameCodec, type Inbound } from './codec.js';
import { ErrorCode, HawserError } from './errors.js';
import { FrameQueue } from './queue.js';
import type {
  AgentChannel,
  ClientTransport,
  FrameChannel,
  HubChannel,
  ServerTransport,
  TunnelListener,
} from './transport.js';

// In-process transport: frames still go through the real codec, so size
// limits and malformed-frame handling behave as on the wire.

class MemoryEnd<In, Out> implements FrameChannel<In, Out> {
  private queue = new FrameQueue<Inbound<In>>(1024);
  private isClosed = false;
  private resolveClosed!: (e: HawserError | undefined) => void;
  readonly closed: Promise<HawserError | undefined>;
  peerEnd!: MemoryEnd<Out, In>;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly peer: string,
    private readonly outCodec: FrameCodec<Out>,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  async send(frame: Out): Promise<void> {
    if (this.isClosed) throw new HawserError(ErrorCode.Unavailable, `channel to ${this.peer} is closed`);
    const bytes = this.outCodec.encode(frame);
    this.bytesOut += bytes.length;
    this.peerEnd.deliverRaw(bytes);
  }

  /** Test hook: hands the peer arbitrary bytes, as a broken client would. */
  sendRaw(bytes: Uint8Array): void {
    this.bytesOut += bytes.byteLength;
    this.peerEnd.deliverRaw(bytes);
  }

  inCodec!: FrameCodec<In>;

  private deliverRaw(bytes: Uint8Array): void {
    if (this.isClosed) return;
    this.bytesIn += bytes.byteLength;
    // Decoding on a later tick keeps delivery asynchronous, as on a socket.
    queueMicrotask(() => {
      if (!this.isClosed) this.queue.push(this.inCodec.decode(bytes));
    });
  }

  frames(): AsyncIterable<Inbound<In>> {
    return this.queue;
  }

  close(error?: HawserError): void {
    if (this.finish(error)) this.peerEnd.finish(error);
  }

  private finish(error?: HawserError): boolean {
    if (this.isClosed) return false;
    this.isClosed = true;
    queueMicrotask(() => this.queue.end());
    this.resolveClosed(error);
    return true;
  }
}

export function memoryChannelPair(
  maxFrameBytes?: number,
): { hub: HubChannel & { sendRaw(b: Uint8Array): void }; agent: AgentChannel & { sendRaw(b: Uint8Array): void } } {
  const hub = new MemoryEnd<ConnectRequest, ConnectResponse>('memory-agent', hubFrameCodec());
  const agent = new MemoryEnd<ConnectResponse, ConnectRequest>('memory-hub', agentFrameCodec());
  hub.inCodec = agentFrameCodec(maxFrameBytes);
  agent.inCodec = hubFrameCodec(maxFrameBytes);
  hub.peerEnd = agent;
  agent.peerEnd = hub;
  return { hub, agent };
}

/** A server and any number of clients in one process. */
export class MemoryTransport implements ServerTransport {
  private onChannel: ((c: HubChannel) => void) | undefined;
  private open = new Set<AgentChannel>();

  constructor(private readonly maxFrameBytes?: number) {}

  async listen(onChannel: (channel: HubChannel) => void): Promise<TunnelListener> {
    this.onChannel = onChannel;
    return {
      address: 'memory',
      close: async () => {
        this.onChannel = undefined;
        for (const c of this.open) c.close(new HawserError(ErrorCode.HubShuttingDown, 'hub is shutting down'));
      },
    };
  }

  client(): ClientTransport {
    return {
      open: () => {
        const { hub, agent } = memoryChannelPair(this.maxFrameBytes);
        if (!this.onChannel) {
          agent.close(new HawserError(ErrorCode.Unavailable, 'no hub is listening on the memory transport'));
          return agent;
        }
        this.open.add(agent);
        void agent.closed.then(() => this.open.delete(agent));
        this.onChannel(hub);
        return agent;
      },
      close: () => {},
    };
  }
}
