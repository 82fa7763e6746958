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
  set(value: number): void {
    this.value = value;
  }
}

/** A counter with labels as the agent counts it: one number per label set. */
export class AgentCounter<L extends string> {
  readonly values = new Map<string, { labels: Record<L, string>; value: number }>();
  inc(labels: Record<L, string>, by = 1): void {
    const key = JSON.stringify(labels);
    const entry = this.values.get(key);
    if (entry) entry.value += by;
    else this.values.set(key, { labels: { ...labels }, value: by });
  }
}

export class AgentMetrics {
  /** Proxied requests (kubectl through the hub) this agent is serving now. */
  readonly proxyStreamsOpen = new AgentGauge();
  /** Proxied requests this agent served, by the target's HTTP status or the HAWSER_ code that stopped them. */
  readonly proxyRequests = new AgentCounter<'code'>();
  /** Damaged offline cache data moved aside and fetched again: what="record" or "database". */
  readonly cacheQuarantines = new AgentCounter<'what'>();
  /** Quarantines removed past their cap (oldest first). */
  readonly cacheQuarantinesDropped = new AgentCounter<never>();
  /** Compactions run because the database took more than --cache-size-limit on disk. */
  readonly cacheCompactions = new AgentCounter<never>();
  readonly cacheQuarantineBytes = new AgentGauge();
  /** Reconcile passes skipped because the hub was unreachable and --use-cache-when-disconnected=false. */
  readonly applyPassesSkipped = new AgentCounter<never>();
  readonly cacheSizeBytes = new AgentGauge();
  readonly cacheDesiredBytes = new AgentGauge();
  readonly cacheSizeLimitBytes = new AgentGauge();
  readonly cacheStale = new AgentGauge();
  readonly cacheConfirmedAge = new AgentGauge();

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
    const quarantines = new Counter({
      name: 'hawser_agent_cache_quarantines_total',
      help: 'Damaged offline cache data moved aside (kept for an operator) and fetched again from the hub: what="record" (desired-state records) or "database" (the LevelDB database, salvaged on a copy).',
      labelNames: ['what'] as const,
      registers: [registry],
    });
    for (const { labels, value } of this.cacheQuarantines.values.values()) quarantines.inc(labels, value);
    const counters: Array<[string, string, AgentCounter<never>]> = [
      ['hawser_agent_cache_quarantines_dropped_total', 'Quarantined offline cache data removed, oldest first, because the quarantines beside the database passed their cap (files or bytes).', this.cacheQuarantinesDropped],
      ['hawser_agent_apply_passes_skipped_total', 'Reconcile passes of the cached desired state skipped because the hub was unreachable and --use-cache-when-disconnected=false.', this.applyPassesSkipped],
      ['hawser_agent_cache_compactions_total', "Compactions of the offline cache's database run because its files took more than --cache-size-limit on disk.", this.cacheCompactions],
    ];
    for (const [name, help, counter] of counters) new Counter({ name, help, registers: [registry] }).inc([...counter.values.values()].reduce((n, e) => n + e.value, 0));
    const gauges: Array<[string, string, AgentGauge]> = [
      ['hawser_agent_cache_size_bytes', "Bytes the offline cache takes on disk: the database's files and the quarantines beside it.", this.cacheSizeBytes],
      ['hawser_agent_cache_quarantine_bytes', 'Bytes the quarantines beside the offline cache database take (part of hawser_agent_cache_size_bytes).', this.cacheQuarantineBytes],
      ['hawser_agent_cache_desired_bytes', 'Desired-state bytes the offline cache holds, as counted against --cache-size-limit.', this.cacheDesiredBytes],
      ['hawser_agent_cache_size_limit_bytes', '--cache-size-limit (0: no limit).', this.cacheSizeLimitBytes],
      ['hawser_agent_cache_stale', '1 while the cached desired state is older than --cache-max-age (the hub has not confirmed it since); it is still reconciled.', this.cacheStale],
      ['hawser_agent_cache_confirmed_age_seconds', 'Seconds since the hub last confirmed the cached desired state (0: never synced).', this.cacheConfirmedAge],
    ];
    for (const [name, help, gauge] of gauges) new Gauge({ name, help, registers: [registry] }).set(gauge.value);
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
