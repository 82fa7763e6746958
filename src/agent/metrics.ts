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
  readonly cacheQuarantines = new Counter({
    name: 'hawser_agent_cache_quarantines_total',
    help: 'Damaged offline cache data moved aside (kept for an operator) and fetched again from the hub: what="record" (desired-state records) or "database" (the LevelDB database, salvaged on a copy).',
    labelNames: ['what'] as const,
    registers: [this.registry],
  });
  readonly cacheSizeBytes = new Gauge({
    name: 'hawser_agent_cache_size_bytes',
    help: "Bytes the offline cache's database takes on disk.",
    registers: [this.registry],
  });
  readonly cacheDesiredBytes = new Gauge({
    name: 'hawser_agent_cache_desired_bytes',
    help: 'Desired-state bytes the offline cache holds, as counted against --cache-size-limit.',
    registers: [this.registry],
  });
  readonly cacheSizeLimitBytes = new Gauge({
    name: 'hawser_agent_cache_size_limit_bytes',
    help: '--cache-size-limit (0: no limit).',
    registers: [this.registry],
  });
  readonly cacheStale = new Gauge({
    name: 'hawser_agent_cache_stale',
    help: '1 while the cached desired state is older than --cache-max-age (the hub has not confirmed it since); it is still reconciled.',
    registers: [this.registry],
  });
  readonly cacheConfirmedAge = new Gauge({
    name: 'hawser_agent_cache_confirmed_age_seconds',
    help: 'Seconds since the hub last confirmed the cached desired state (0: never synced).',
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
