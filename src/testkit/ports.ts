import { createServer, type Server } from 'node:net';
import { TestkitError, TestkitErrorCode } from './errors.js';
import { defaultTracker, type Tracker } from './tracker.js';

// Ports this process already handed out. The kernel may offer a port again
// once its probe socket is closed, before the first taker has bound it; we
// skip repeats so two clusters started at once never get the same port.
const issued = new Set<number>();
const ISSUED_MEMORY = 4096;

function listenOnce(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        server.close();
        reject(new Error('listen on 127.0.0.1:0 returned no port'));
        return;
      }
      resolve({ server, port: addr.port });
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export interface FreePortOptions {
  /** Names the port in leak reports. Default "freePort". */
  owner?: string;
  tracker?: Tracker;
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago: listen on port 0, read
 * the port, close. The port is registered with the tracker.
 */
export async function freePort(options: FreePortOptions = {}): Promise<number> {
  const held: Server[] = [];
  try {
    for (let i = 0; i < 50; i++) {
      const { server, port } = await listenOnce();
      held.push(server); // keep repeats bound so the kernel offers another
      if (issued.has(port)) continue;
      issued.add(port);
      if (issued.size > ISSUED_MEMORY) {
        const oldest = issued.values().next();
        if (!oldest.done) issued.delete(oldest.value);
      }
      (options.tracker ?? defaultTracker).trackPort(port, options.owner ?? 'freePort');
      return port;
    }
    throw new TestkitError(TestkitErrorCode.InvalidArgument, 'freePort: no unused port after 50 attempts');
  } finally {
    await Promise.all(held.map(close));
  }
}
