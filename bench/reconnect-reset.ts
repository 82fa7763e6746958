// bench/reconnect --mode reset: what one link reset costs a single agent on
// the weak link, before and after, in the same run.
//
// Chain: agent -> toxiproxy (bandwidth first, then latency, both ways) -> a
// counting TCP relay (testkit) -> hub. Per build (a baseline checkout, built,
// and this one): a real `hawser hub` from that build and one agent imported
// from that build's dist (a StaticClusterReader, no cluster), default flags.
// Each reset is made once the agent is back and the hub has acked a heartbeat
// on the new connection (the link worked); toxiproxy drops every connection
// (disable + enable). Measured from the reset: the agent welcomed again, and
// its first heartbeat acked on the new connection (data flowing again); the
// TCP connections the hub saw and their bytes.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import type { RunningAgent } from '../src/agent/index.js';
import { startTcpRelay, startToxiproxy, type TcpRelay } from '../src/testkit/index.js';
import { type BenchHub, benchClusterStatus, freePort, sleep, startBenchHub } from './common.js';

const bootstrapToken = 'abcdef.0123456789abcdef';

export interface ResetOptions {
  /** Builds to compare: label and the directory holding bin/ and dist/. */
  builds: Array<{ label: string; dir: string }>;
  resets: number;
  latencyMs: number;
  rateKBps: number;
  root: string;
  pki: { caFile: string; certFile: string; keyFile: string };
}

export interface ResetResult {
  label: string;
  /** Reset to welcomed again, per reset (ms). */
  welcomedMs: number[];
  /** Reset to the first heartbeat acked on the new connection, per reset (ms). */
  flowingMs: number[];
  /** The agent's backoff waits, per reset (ms, summed if it dialled more than once). */
  waitsMs: number[];
  /** TCP connections the hub side saw per reset, and their bytes (both ways, whole life up to the next reset). */
  connectionsPerReset: number[];
  bytesPerReset: number[];
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

function startHubFrom(build: string, dir: string, ports: { tunnel: number; api: number }, pki: ResetOptions['pki']): Promise<BenchHub> {
  return startBenchHub({ bin: join(build, 'bin/hawser.js'), dir, bootstrapToken, operatorToken: 'hwo_bench-admin-0123456789abcdef', ports, pki, healthyWithinMs: 60_000 });
}

/** Resolves when the agent's next heartbeat is acked and it is ready. */
function nextAck(agent: RunningAgent): Promise<number> {
  return new Promise((resolve) => agent.core.once('rtt', () => resolve(Date.now())));
}

async function runBuild(build: { label: string; dir: string }, o: ResetOptions): Promise<ResetResult> {
  const dir = join(o.root, `reset-${build.label}`);
  mkdirSync(dir, { recursive: true });
  const ports = { tunnel: await freePort(), api: await freePort() };
  const hub = await startHubFrom(build.dir, dir, ports, o.pki);
  const relay: TcpRelay = await startTcpRelay(`127.0.0.1:${ports.tunnel}`);
  const toxi = await startToxiproxy({ baseDir: dir });
  let agent: RunningAgent | undefined;
  try {
    const proxy = await toxi.createProxy(`hub-${build.label}`, relay.listen);
    // Bandwidth first: toxiproxy's latency toxic buffers whole chunks ahead of it.
    for (const stream of ['downstream', 'upstream'] as const) {
      await proxy.addToxic({ name: `rate-${stream}`, type: 'bandwidth', stream, attributes: { rate: o.rateKBps } });
      await proxy.addToxic({ name: `latency-${stream}`, type: 'latency', stream, attributes: { latency: o.latencyMs, jitter: 0 } });
    }
    // The agent as that build has it (its own module graph, its own defaults).
    const mod = (await import(join(build.dir, 'dist/agent/index.js'))) as typeof import('../src/agent/index.js');
    const waitsMs: number[] = [];
    let waitSum = 0;
    agent = await mod.startAgent(
      {
        parentUrl: proxy.listen,
        parentCaFile: o.pki.caFile,
        clusterRegName: `reset-${build.label}`,
        bootstrapToken,
        cacheDir: join(dir, 'agent'),
      },
      {
        logger: pino({ level: 'silent' }),
        reader: new mod.StaticClusterReader(benchClusterStatus),
        applier: () => ({ reconcile: async () => ({ objects: [], prune: { ran: false, errors: [] } }) }),
      },
    );
    agent.core.on('state', (s) => {
      if (s.kind === 'backing-off') waitSum += s.delayMs;
    });
    const readyAgain = () =>
      new Promise<number>((resolve) => {
        const onState = (s: { kind: string }) => {
          if (s.kind !== 'ready') return;
          agent!.core.off('state', onState);
          resolve(Date.now());
        };
        agent!.core.on('state', onState);
      });
    await Promise.race([nextAck(agent), sleep(120_000).then(() => Promise.reject(new Error(`${build.label}: no heartbeat ack within 120 s`)))]);
    const result: ResetResult = { label: build.label, welcomedMs: [], flowingMs: [], waitsMs, connectionsPerReset: [], bytesPerReset: [] };
    for (let i = 0; i < o.resets; i++) {
      const firstConnection = relay.connections.length;
      waitSum = 0;
      const welcomed = readyAgain();
      const resetAt = Date.now();
      await proxy.disable();
      await proxy.enable();
      const welcomedAt = await welcomed;
      const flowingAt = await nextAck(agent);
      result.welcomedMs.push(welcomedAt - resetAt);
      result.flowingMs.push(flowingAt - resetAt);
      waitsMs.push(waitSum);
      // Let late connections (a client left open redialling) show before counting.
      await sleep(3_000);
      const opened = relay.connections.slice(firstConnection);
      result.connectionsPerReset.push(opened.length);
      result.bytesPerReset.push(opened.reduce((sum, c) => sum + c.bytes, 0));
      log(`${build.label}: reset ${i + 1}: welcomed after ${welcomedAt - resetAt} ms, data flowing after ${flowingAt - resetAt} ms, waited ${waitSum} ms, ${opened.length} connection(s)`);
    }
    return result;
  } finally {
    await agent?.stop();
    await toxi.stop();
    await relay.close();
    hub.cp.kill('SIGTERM');
    await new Promise((r) => (hub.cp.exitCode !== null ? r(undefined) : hub.cp.once('exit', r)));
  }
}

export async function runResetBench(o: ResetOptions): Promise<ResetResult[]> {
  const results: ResetResult[] = [];
  for (const build of o.builds) results.push(await runBuild(build, o));
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
  const fmt = (v: number[]) => v.map((x) => (x / 1000).toFixed(1)).join(', ');
  console.log(`\none link reset, ${o.latencyMs} ms each way, ${o.rateKBps} KB/s, ${o.resets} resets per build\n`);
  console.log(`| | ${results.map((r) => r.label).join(' | ')} |\n|---|${results.map(() => '---|').join('')}`);
  const rows: Array<[string, (r: ResetResult) => string]> = [
    ['reset to welcomed, each (s)', (r) => fmt(r.welcomedMs)],
    ['reset to data flowing (first heartbeat ack), each (s)', (r) => fmt(r.flowingMs)],
    ['mean reset to data flowing (s)', (r) => (mean(r.flowingMs) / 1000).toFixed(2)],
    ['backoff waits, each (s)', (r) => fmt(r.waitsMs)],
    ['TCP connections per reset', (r) => r.connectionsPerReset.join(', ')],
    ['bytes on the wire per reset (both ways)', (r) => r.bytesPerReset.join(', ')],
  ];
  for (const [what, get] of rows) console.log(`| ${what} | ${results.map(get).join(' | ')} |`);
  if (results.length === 2) {
    const [a, b] = results as [ResetResult, ResetResult];
    console.log(`\nmean data-flowing ratio ${b.label}/${a.label}: ${(mean(b.flowingMs) / mean(a.flowingMs)).toFixed(2)}; bytes ${(mean(b.bytesPerReset) / mean(a.bytesPerReset)).toFixed(2)}`);
  }
  return results;
}
