import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// One registry per hub instance (no global singleton), so several hubs in one
// test process keep separate counts.

export class HubMetrics {
  readonly registry = new Registry();
  readonly rejected = new Counter({
    name: 'hawser_hub_rejected_total',
    help: 'Frames, registrations and credentials the hub refused, by error code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly connectedAgents = new Gauge({
    name: 'hawser_hub_connected_agents',
    help: 'Authenticated agent sessions (control streams past registration).',
    registers: [this.registry],
  });
  readonly openStreams = new Gauge({
    name: 'hawser_hub_open_streams',
    help: 'Open control streams, including ones still registering or waiting for approval.',
    registers: [this.registry],
  });
  readonly sessions = new Counter({
    name: 'hawser_hub_sessions_total',
    help: 'Control streams accepted after authentication, by cluster (a rise is a reconnect).',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: 'hawser_hub_certificate_expiry_timestamp_seconds',
    help: 'Unix time each of the hub\'s certificates expires: the serving certificate, and every CA in the trust bundle (by fingerprint).',
    labelNames: ['certificate', 'fingerprint'] as const,
    registers: [this.registry],
  });
  readonly trustBundleVersion = new Gauge({
    name: 'hawser_hub_trust_bundle_version',
    help: 'Version of the CA trust bundle the hub sends its agents (rises with every rotation step).',
    registers: [this.registry],
  });
  readonly lastHeartbeat = new Gauge({
    name: 'hawser_cluster_last_heartbeat_timestamp_seconds',
    help: 'Unix time of the last heartbeat from each cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'hawser_cluster_ready',
    help: 'Ready condition per cluster: 1 True, 0 False, -1 Unknown (lease expired).',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly leaseExpiries = new Counter({
    name: 'hawser_cluster_lease_expiries_total',
    help: 'Times a cluster lease ran out.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly rtt = new Histogram({
    name: 'hawser_tunnel_rtt_seconds',
    help: 'Heartbeat round-trip time (heartbeat to ack) as agents measure it.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'hawser_tunnel_bytes_total',
    help: 'Control-stream payload bytes, by direction (in: agent to hub).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly handshakeLimit = new Gauge({
    name: 'hawser_hub_handshake_limit',
    help: 'The adaptive limit on handshakes in progress (it follows their latency).',
    registers: [this.registry],
  });
  readonly handshakesQueued = new Gauge({
    name: 'hawser_hub_handshakes_queued',
    help: 'Hellos waiting for a handshake slot (their TLS is done; past a short expected wait they get HAWSER_HUB_BUSY instead).',
    registers: [this.registry],
  });
  readonly registrations = new Counter({
    name: 'hawser_hub_registrations_total',
    help: 'Registration outcomes.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly proxyStreamsOpen = new Gauge({
    name: 'hawser_hub_proxy_streams_open',
    help: 'Proxied requests (kubectl through the hub) in flight now, each on its own stream to an agent.',
    registers: [this.registry],
  });
  /** The hub's idle pooled proxy streams now, summed over sessions: the hub core sets it. */
  pooledProxyStreams: () => number = () => 0;
  readonly proxyStreamsPooled: Gauge = new Gauge({
    name: 'hawser_hub_proxy_streams_pooled',
    help: 'Idle streams agents opened ahead for proxied requests (feature proxy-pool), waiting for one; not in hawser_hub_proxy_streams_open.',
    registers: [this.registry],
    collect: (): void => this.proxyStreamsPooled.set(this.pooledProxyStreams()),
  });
  readonly proxyRequests = new Counter({
    name: 'hawser_hub_proxy_requests_total',
    help: 'Proxied requests, by the HTTP status sent to the client (101 for upgrades; "aborted" when the client or the link went away mid-answer).',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly agentCacheQuarantines = new Counter({
    name: 'hawser_agent_cache_quarantines_total',
    help: 'Corrupt offline caches that agents quarantined and rebuilt, as they report in their hello.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });

  readonly syncSentBytes = new Counter({
    name: 'hawser_hub_sync_sent_bytes_total',
    help: 'Bytes of sync frames the hub handed to the transport, by cluster (as they go on the wire).',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncRawBytes = new Counter({
    name: 'hawser_hub_sync_raw_bytes_total',
    help: 'Bytes of the same sync frames before compression, by cluster (equal to hawser_hub_sync_sent_bytes_total without compression).',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncChunks = new Counter({
    name: 'hawser_hub_sync_chunks_total',
    help: 'Chunks of large objects the hub sent, by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncResumedBytes = new Counter({
    name: 'hawser_hub_sync_resumed_bytes_total',
    help: 'Bytes of large objects not sent again because the agent held them from a cut transfer, by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncRefused = new Counter({
    name: 'hawser_hub_sync_objects_refused_total',
    help: 'Objects sync did not send because they break a limit, by cluster and error code.',
    labelNames: ['cluster', 'code'] as const,
    registers: [this.registry],
  });

  readonly syncPeakInFlightBytes = new Gauge({
    name: 'hawser_hub_sync_peak_in_flight_bytes',
    help: 'The most sync bytes on the wire and not yet acknowledged at once, by cluster, since the hub started (bounded by the in-flight window).',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly applyReportFrames = new Counter({
    name: 'hawser_hub_apply_report_frames_total',
    help: 'ApplyReport frames received (whole reports, or parts of one with apply-report.delta), by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly applyReportBytes = new Counter({
    name: 'hawser_hub_apply_report_bytes_total',
    help: 'Bytes of ApplyReport frames received, by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly applyReportLargestFrame = new Gauge({
    name: 'hawser_hub_apply_report_largest_frame_bytes',
    help: 'The largest ApplyReport frame received from the cluster on its current session, in bytes.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly applyReportFullNeeded = new Counter({
    name: 'hawser_hub_apply_report_full_needed_total',
    help: 'Apply report deltas the hub could not apply (it lacked their base, or a part was missing) and asked to have whole, by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });

  readonly syncSnapshots = new Counter({
    name: 'hawser_hub_sync_snapshots_total',
    help: 'Sync snapshots sent, by cluster and reason (first-sync, other-incarnation, agent-ahead, history-compacted, digest-mismatch, prune-confirmed).',
    labelNames: ['cluster', 'reason'] as const,
    registers: [this.registry],
  });
  readonly syncAckedRevision = new Gauge({
    name: 'hawser_hub_sync_acked_revision',
    help: 'The highest sync revision the agent acknowledged as durable to this hub run, by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncResumeRevision = new Gauge({
    name: 'hawser_hub_sync_resume_revision',
    help: "The revision the agent's last hello said it holds (0: none of this hub's incarnation), by cluster.",
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly syncAckedLost = new Counter({
    name: 'hawser_hub_sync_acked_lost_total',
    help: 'Sessions whose hello resumed behind a revision the agent had acknowledged to this hub run (the agent lost durable sync state), by cluster.',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'hawser_hub_' });
  }
}
