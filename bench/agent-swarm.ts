import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
// eslint-disable-next-line no-restricted-imports -- the baseline clients must be bare grpc-js, not hawser's transport
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { type RunningAgent, StaticClusterReader, startAgent } from '../src/agent/index.js';
import { agentName, baselinePath, benchClusterStatus, type FromSwarm, type SwarmStart, type SwarmStats, type ToSwarm } from './common.js';

// One forked process of bench/agents.ts: runs many lightweight agents (or,
// for the baseline, bare gRPC clients) and a counting TCP relay they all dial,
// so the bench sees the real wire bytes (TLS records carrying HTTP/2 and gRPC
// frames, keepalive pings included; TCP/IP headers excluded). One relay per
// swarm keeps every process under the 20,000 open-file limit at 10,000 agents.

const stats: SwarmStats = {
  type: 'stats',
  started: 0,
  ready: 0,
  drops: 0,
  errors: {},
  relayIn: 0,
  relayOut: 0,
  relayConnections: 0,
};

function send(m: FromSwarm): void {
  process.send?.(m);
}

let target = Infinity;
function markReady(): void {
  stats.ready++;
  if (stats.ready >= target && stats.allReadyAt === undefined) stats.allReadyAt = Date.now();
}

function countError(code: string): void {
  stats.errors[code] = (stats.errors[code] ?? 0) + 1;
}

function startRelay(target: string): Promise<string> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i);
  const port = Number(target.slice(i + 1));
  const server = createServer({ noDelay: true }, (down: Socket) => {
    const up = connect({ host, port, noDelay: true });
    stats.relayConnections++;
    // Counting listeners go on before pipe(), in the same tick, so no chunk is missed.
    down.on('data', (b: Buffer) => (stats.relayIn += b.length));
    up.on('data', (b: Buffer) => (stats.relayOut += b.length));
    down.pipe(up);
    up.pipe(down);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      stats.relayConnections--;
      down.destroy();
      up.destroy();
    };
    for (const s of [down, up]) {
      s.on('error', close);
      s.on('close', close);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
      const a = server.address();
      if (!a || typeof a === 'string') return reject(new Error('relay has no address'));
      resolve(`127.0.0.1:${a.port}`);
    });
  });
}

const agents: RunningAgent[] = [];
const clients: grpc.Client[] = [];

async function startHawserAgent(o: SwarmStart, relay: string, index: number, reader: StaticClusterReader): Promise<void> {
  const name = agentName(index);
  const logger = pino({ level: 'silent' });
  const agent = await startAgent(
    {
      parentUrl: relay,
      parentCaFile: o.caFile,
      clusterRegName: name,
      bootstrapToken: o.bootstrapToken,
      cacheDir: join(o.cacheRoot, name),
      clusterStatusUpdateFrequencyMs: o.statusFrequencyMs,
      clusterLeaseDurationMs: o.leaseDurationMs,
      keepaliveTimeMs: o.keepaliveTimeMs,
      keepaliveTimeoutMs: o.keepaliveTimeoutMs,
      registerTimeoutMs: o.registerTimeoutMs,
      reconnectPeriodMs: o.reconnectPeriodMs,
      maxReconnectPeriodMs: o.maxReconnectPeriodMs,
    },
    // Idle agents: no cluster behind them and nothing subscribed, so nothing to apply.
    { logger, reader, applier: () => ({ reconcile: async () => ({ objects: [], prune: { ran: false, errors: [] } }) }) },
  );
  agents.push(agent);
  let ready = false;
  agent.core.on('state', (s) => {
    if (s.kind === 'ready') {
      ready = true;
      markReady();
      return;
    }
    if (ready) {
      ready = false;
      stats.ready--;
      stats.drops++;
    }
    if (s.kind === 'backing-off') countError(s.reason.code);
  });
}

function startBaselineClient(o: SwarmStart, relay: string, caPem: Buffer): void {
  // Mirrors GrpcClientTransport's channel options (src/tunnel/grpc.ts) and the agent's keepalive.
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    'grpc.keepalive_time_ms': o.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': o.keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1_000,
    'grpc.enable_retries': 0,
  };
  const client = new grpc.Client(relay, grpc.credentials.createSsl(caPem), options);
  clients.push(client);
  const open = () => {
    let ready = false;
    let over = false;
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(
      baselinePath,
      (b) => b,
      (b) => b,
      new grpc.Metadata(),
      { waitForReady: false } as grpc.CallOptions, // as src/tunnel/grpc.ts does
    );
    call.on('metadata', () => {
      ready = true;
      markReady();
    });
    call.on('data', () => undefined);
    const ended = (code: string) => {
      if (over) return;
      over = true;
      if (ready) {
        stats.ready--;
        stats.drops++;
      }
      countError(code);
      setTimeout(open, 1_000).unref();
    };
    call.on('error', (e: grpc.ServiceError) => ended(`grpc-${grpc.status[e.code] ?? e.code}`));
    call.on('status', (s: grpc.StatusObject) => ended(`grpc-${grpc.status[s.code] ?? s.code}`));
  };
  open();
}

async function start(o: SwarmStart): Promise<void> {
  const relay = await startRelay(o.target);
  const caPem = readFileSync(o.caFile);
  const reader = new StaticClusterReader(benchClusterStatus);
  // Paced by the clock, not by completions: a slow hub must not slow the offered rate.
  const began = Date.now();
  target = o.count;
  stats.rampStartedAt = began;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(o.count, Math.ceil(((Date.now() - began) / 1000) * o.rampPerSec));
      while (stats.started < due) {
        const index = o.first + stats.started++;
        if (o.mode === 'baseline') startBaselineClient(o, relay, caPem);
        else {
          startHawserAgent(o, relay, index, reader).catch((err: unknown) => {
            countError('start-failed');
            send({ type: 'fatal', message: `agent ${agentName(index)}: ${(err as Error).message}` });
          });
        }
      }
      if (stats.started >= o.count) resolve();
      else setTimeout(tick, 20);
    };
    tick();
  });
}

process.on('message', (m: ToSwarm) => {
  if (m.type === 'start') {
    start(m).catch((err: unknown) => send({ type: 'fatal', message: (err as Error).stack ?? String(err) }));
  } else if (m.type === 'sample') {
    send({ ...stats, id: m.id });
  }
});
// The orchestrator going away (even killed) ends the swarm; no graceful stop is needed.
process.on('disconnect', () => process.exit(0));
// SIGTERM (sent when profiled) exits normally, so --cpu-prof writes its profile.
process.on('SIGTERM', () => process.exit(0));
setInterval(() => send({ ...stats }), 1_000);
