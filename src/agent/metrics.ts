import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// The agent's own metrics, served on --metrics-address when given. Counted in
// plain numbers; prom-client (84 modules with @opentelemetry/api) is imported
// only when /metrics is served, so an agent without --metrics-address never loads it.

/** A gauge as the agent counts it: one number. */
export class AgentGauge {
  value = 0;
  inc(): void {
    this.value++;
  }
  dec(): void {
    this.value--;
  }
}

/** A counter with labels as the agent counts it: one number per label set. */
export class AgentCounter<L extends string> {
  readonly values = new Map<string, { labels: Record<L, string>; value: number }>();
  inc(labels: Record<L, string>): void {
    const key = JSON.stringify(labels);
    const entry = this.values.get(key);
    if (entry) entry.value++;
    else this.values.set(key, { labels: { ...labels }, value: 1 });
  }
}

export class AgentMetrics {
  /** Proxied requests (kubectl through the hub) this agent is serving now. */
  readonly proxyStreamsOpen = new AgentGauge();
  /** Proxied requests this agent served, by the target's HTTP status or the HAWSER_ code that stopped them. */
  readonly proxyRequests = new AgentCounter<'code'>();

  /** The Prometheus text exposition of these metrics, and its content type. */
  async exposition(): Promise<{ text: string; contentType: string }> {
    const { Counter, Gauge, Registry } = await import('prom-client');
    const registry = new Registry();
    const streams = new Gauge({ name: 'hawser_agent_proxy_streams_open', help: 'Proxied requests (kubectl through the hub) this agent is serving now.', registers: [registry] });
    streams.set(this.proxyStreamsOpen.value);
    const requests = new Counter({
      name: 'hawser_agent_proxy_requests_total',
      help: "Proxied requests this agent served, by the target's HTTP status or the HAWSER_ code that stopped them.",
      labelNames: ['code'] as const,
      registers: [registry],
    });
    for (const { labels, value } of this.proxyRequests.values.values()) requests.inc(labels, value);
    return { text: await registry.metrics(), contentType: registry.contentType };
  }
}

/** Serves GET /metrics on host:port (loopback is the default place for it); resolves with the bound address. */
export async function serveAgentMetrics(metrics: AgentMetrics, host: string, port: number): Promise<{ server: Server; address: string }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.exposition().then(
      ({ text, contentType }) => res.writeHead(200, { 'content-type': contentType }).end(text),
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
