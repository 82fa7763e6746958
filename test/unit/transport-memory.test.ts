import { MemoryTransport } from '../../src/tunnel/memory.js';
import { maxStreamChunkBytes } from '../../src/tunnel/streams.js';
import { transportConformance } from './transport-conformance.js';

transportConformance('memory', async () => {
  const memory = new MemoryTransport();
  return {
    listenConnections: (onConnection, events) => memory.listenConnections(onConnection, events),
    client: () => memory.client(),
    // The reader's window, plus the one chunk that crossed it.
    bufferBoundBytes: memory.streamWindowBytes + maxStreamChunkBytes,
    close: async () => {},
  };
});
