import { describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../src/agent/metrics.js';

// The agent counts in plain numbers and renders through prom-client only when
// /metrics is served: the exposition must say what was counted.

describe('AgentMetrics', () => {
  it('renders the open streams and the requests per code in the Prometheus text format', async () => {
    const m = new AgentMetrics();
    m.proxyStreamsOpen.inc();
    m.proxyStreamsOpen.inc();
    m.proxyStreamsOpen.dec();
    m.proxyRequests.inc({ code: '200' });
    m.proxyRequests.inc({ code: '200' });
    m.proxyRequests.inc({ code: 'HAWSER_PROXY_TARGET_UNREACHABLE' });
    const { text, contentType } = await m.exposition();
    expect(contentType).toMatch(/^text\/plain/);
    expect(text).toContain('# TYPE hawser_agent_proxy_streams_open gauge\nhawser_agent_proxy_streams_open 1\n');
    expect(text).toContain('hawser_agent_proxy_requests_total{code="200"} 2\n');
    expect(text).toContain('hawser_agent_proxy_requests_total{code="HAWSER_PROXY_TARGET_UNREACHABLE"} 1\n');
  });

  it('a counter with nothing counted shows its type and no sample, as before', async () => {
    const { text } = await new AgentMetrics().exposition();
    expect(text).toContain('# TYPE hawser_agent_proxy_requests_total counter');
    expect(text).not.toMatch(/^hawser_agent_proxy_requests_total/m);
  });
});
