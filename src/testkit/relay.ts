import { connect, createServer, type Server, type Socket } from 'node:net';

// An in-process TCP relay that counts what crosses it: each accepted
// connection and its bytes. Tests that must know how many TCP (and so TLS)
// connections a peer opened put it in front of the peer it dials; toxiproxy
// says nothing about connections.

export interface RelayConnection {
  readonly id: number;
  /** Date.now() when it was accepted. */
  readonly acceptedAt: number;
  /** Bytes relayed both ways so far. */
  bytes: number;
  closed: boolean;
}

export interface TcpRelay {
  /** host:port to dial instead of the target. */
  readonly listen: string;
  /** Every connection accepted so far, in order. */
  readonly connections: readonly RelayConnection[];
  /** Stops accepting (dials are refused) and resets every open connection: a link that is down. */
  down(): Promise<void>;
  /** Accepts again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpRelay(target: string): Promise<TcpRelay> {
  const i = target.lastIndexOf(':');
  const targetHost = target.slice(0, i).replace(/^\[|\]$/g, '');
  const targetPort = Number(target.slice(i + 1));
  const connections: RelayConnection[] = [];
  const open = new Set<Socket>();
  const onConnection = (client: Socket) => {
    const record: RelayConnection = { id: connections.length + 1, acceptedAt: Date.now(), bytes: 0, closed: false };
    connections.push(record);
    const upstream = connect(targetPort, targetHost);
    open.add(client);
    open.add(upstream);
    const end = () => {
      record.closed = true;
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk: Buffer) => {
        record.bytes += chunk.length;
        to.write(chunk);
      });
      from.on('error', end);
      from.on('close', end);
    }
  };
  let server: Server = createServer(onConnection);
  const listenOn = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
  const port = await listenOn(0);
  let listening = true;
  const down = async () => {
    if (listening) {
      listening = false;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of open) socket.resetAndDestroy();
      await closed;
    }
  };
  return {
    listen: `127.0.0.1:${port}`,
    connections,
    down,
    up: async () => {
      if (listening) return;
      server = createServer(onConnection);
      await listenOn(port);
      listening = true;
    },
    close: down,
  };
}
