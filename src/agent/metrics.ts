import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';

// The agent's own metrics, served on --metrics-address when given. One
// registry per agent (no global singleton).

export class AgentMetrics {
  readonly registry = new Registry();
  readonly proxyStreamsOpen = new Gauge({
    name: 'hawser_agent_proxy_streams_open',
    help: 'Proxied requests (kubectl through the hub) this agent is serving now.',
    registers: [this.registry],
  });
  readonly proxyRequests = new Counter({
    name: 'hawser_agent_proxy_requests_total',
    help: 'Proxied requests this agent served, by the target\'s HTTP status or the HAWSER_ code that stopped them.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
}

/** Serves GET /metrics on host:port (loopback is the default place for it); resolves with the bound address. */
export async function serveAgentMetrics(metrics: AgentMetrics, host: string, port: number): Promise<{ server: Server; address: string }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return { server, address: `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` };
}
