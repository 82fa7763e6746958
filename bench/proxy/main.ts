// bench/proxy: what the hub's reverse proxy costs a request (issue 8 §6).
//
//   npm run bench:proxy                                   # a few minutes
//   npm run bench:proxy -- --small-requests 10000 --large-bytes 512MB --large-reps 9
//
// Two targets, the same in every way of reaching them:
//   kube   a real child kube-apiserver (testkit startKubeCluster): GET of one
//          namespace (small), and a LIST of ConfigMaps of --kube-list-bytes (large);
//   http   a plain Node HTTP server on loopback (bench/proxy/target-server.ts,
//          its own process), over TLS by default (hawser's proxy/https/HOST:PORT
//          reaches https targets only): GET /small (512 B) and GET /large
//          (--large-bytes, streamed).
// Three ways, set up alike (loopback, one keep-alive connection per way and
// target, requests one at a time, the same Node client in this process):
//   direct        the client to the target;
//   hawser        `hawser hub` and `hawser agent` processes as a user runs them
//                 (bin/hawser.js; the agent dials the hub's TLS tunnel; the
//                 agent's kubeconfig is the child's admin): the client to the
//                 hub's operator API (plain HTTP on loopback, an operator
//                 token) at /clusters/NAME/<kube path> and Clusternet's
//                 /apis/proxies.clusternet.io/v1alpha1/sockets/ID/proxy/SCHEME/HOST:PORT/<path>;
//   remotedialer  Clusternet's tunnel library, github.com/rancher/remotedialer
//                 v0.4.1 (bench/proxy/remotedialer: a server and a client
//                 process; the client dials the server's WebSocket over TLS
//                 with the same certificate as the hub): the client to the
//                 server's plain HTTP proxy on loopback, which reverse-proxies
//                 through the tunnel as Clusternet's exchanger does (TLS to the
//                 kube-apiserver end to end through the tunnel; the request's
//                 own bearer token).
// Small GETs go in --rounds rounds, the ways' order rotating each round, so
// that the load of a shared machine falls on all ways alike; large responses
// likewise, --large-reps times (the median rate is reported).
//
// Prints a Markdown table of figures and ratios vs direct with the issue's
// aims (latency <= 1.3x direct, throughput >= 0.8x, ahead of remotedialer),
// the proxies' CPU per GB moved, and writes bench/results/proxy-<time>.json.
// A way that cannot be measured (e.g. a hub without the proxy) is reported as
// such and the others still run.

import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { Agent as HttpAgent, type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { cpus, loadavg, networkInterfaces, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startKubeCluster, type KubeCluster } from '../../src/testkit/index.js';
import { createCertificateAuthority, createServingCertificate } from '../../src/tunnel/index.js';
import { findRepoRoot, freePort, readCpuMs, sleep } from '../common.js';
import { type MetricRow, renderTable, summariseLatency, summariseThroughput, verdict, type Way, ways } from './report.js';
import type { FromTargetServer } from './target-server.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = findRepoRoot(here);
const edgeName = 'bench-edge';
const benchNamespace = 'bench-proxy';
const configMapBytes = 512 * 1024;
const bootstrapToken = 'abcdef.0123456789abcdef';
const operatorToken = 'hwo_bench-proxy-0123456789abcdef';
const operatorName = 'bench';
const remotedialerToken = 'rd-bench-0123456789abcdef';
const requestIdleTimeoutMs = 60_000;

// ---------------------------------------------------------------- arguments

function bytesArg(text: string, what: string): number {
  const m = /^(\d+)(B|KB|MB|GB)?$/i.exec(text.trim());
  if (!m) throw new Error(`${what}: "${text}" is not a size (e.g. 64MB)`);
  const unit = { B: 1, KB: 1 << 10, MB: 1 << 20, GB: 1 << 30 }[(m[2] ?? 'B').toUpperCase() as 'B'];
  return Number(m[1]) * unit;
}

function countArg(text: string, what: string, min = 1): number {
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < min) throw new Error(`${what}: "${text}" is not an integer >= ${min}`);
  return n;
}

const { values: flags } = parseArgs({
  options: {
    'small-requests': { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '10' },
    'large-bytes': { type: 'string', default: '64MB' },
    'large-reps': { type: 'string', default: '5' },
    'kube-list-bytes': { type: 'string', default: '16MB' },
    ways: { type: 'string', default: ways.join(',') },
    'target-scheme': { type: 'string', default: 'https' },
    'proxy-hop': { type: 'string', default: 'https' },
    'hawser-bin': { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    'cpu-prof-dir': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (flags.help) {
  console.log(`usage: npm run bench:proxy -- [flags]
  --small-requests 2000   small GETs per target per way (p50/p99 of these)
  --warmup 200            unmeasured GETs per target per way first
  --rounds 10             small GETs (and large repetitions) are interleaved across ways in rounds
  --large-bytes 64MB      size of the plain HTTP server's large response (KB, MB, GB: powers of 1024; rates are 10^6 B/s)
  --large-reps 5          large responses per target per way (the median rate is reported)
  --kube-list-bytes 16MB  ConfigMaps (512 KB each) listed as the kube-apiserver's large response; 0 skips it
  --ways direct,hawser,remotedialer
  --target-scheme https   https or http: how the plain server is reached, alike by every way (hawser's
                          proxy/https/HOST:PORT takes https only, as Clusternet's path in issue 8 does)
  --proxy-hop https       https or http: the client's hop to the hub or the remotedialer server (https: both
                          serve TLS on this machine's own address, as an operator reaches a hub; http: loopback)
  --hawser-bin FILE       the hawser CLI to run (default: this checkout's bin/hawser.js, built by the npm script)
  --keep-tmp              keep the temp directory (logs of hub, agent, remotedialer)
  --cpu-prof-dir DIR      run hub and agent with node --cpu-prof, writing their profiles to DIR on exit`);
  process.exit(0);
}

const args = {
  smallRequests: countArg(flags['small-requests'], '--small-requests'),
  warmup: countArg(flags.warmup, '--warmup', 0),
  rounds: countArg(flags.rounds, '--rounds'),
  largeBytes: bytesArg(flags['large-bytes'], '--large-bytes'),
  largeReps: countArg(flags['large-reps'], '--large-reps'),
  kubeListBytes: bytesArg(flags['kube-list-bytes'], '--kube-list-bytes'),
  ways: flags.ways.split(',').map((s) => s.trim()) as Way[],
  targetScheme: flags['target-scheme'] as 'http' | 'https',
  proxyHop: flags['proxy-hop'] as 'http' | 'https',
  hawserBin: resolve(flags['hawser-bin'] ?? join(repoRoot, 'bin/hawser.js')),
  keepTmp: flags['keep-tmp'],
  /** node flags of the hub and agent processes: --cpu-prof when asked (NODE_OPTIONS may not carry it). */
  hawserNodeFlags: flags['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(flags['cpu-prof-dir'])}`] : [],
};
for (const w of args.ways) if (!ways.includes(w)) throw new Error(`--ways: unknown way "${w}" (want ${ways.join(', ')})`);
if (!args.ways.includes('direct')) throw new Error('--ways must include direct: every figure is a ratio to it');
if (args.targetScheme !== 'http' && args.targetScheme !== 'https') throw new Error(`--target-scheme: "${args.targetScheme}" (want http or https)`);
if (args.proxyHop !== 'http' && args.proxyHop !== 'https') throw new Error(`--proxy-hop: "${args.proxyHop}" (want http or https)`);

/**
 * Where the proxies' client-facing servers listen. The hub serves its API over
 * TLS only off loopback, so for an https hop both proxies listen on this
 * machine's own (non-loopback) address: the kernel still carries it over the
 * loopback device, as fast as 127.0.0.1. With an https hop every way costs the
 * client one TLS session, as direct does; a plain hop would spare the proxied
 * ways the client's decryption, which on a busy machine favours them.
 */
function proxyHopHost(): string {
  if (args.proxyHop === 'http') return '127.0.0.1';
  const own = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal);
  if (!own) throw new Error('--proxy-hop https needs a non-loopback IPv4 address on this machine (or use --proxy-hop http)');
  return own.address;
}
const hopHost = proxyHopHost();

// ------------------------------------------------------- processes, cleanup

const children = new Set<ChildProcess>();
let tmpRoot: string | undefined;
let cluster: KubeCluster | undefined;

function track<T extends ChildProcess>(cp: T): T {
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}

function exited(cp: ChildProcess): boolean {
  return cp.exitCode !== null || cp.signalCode !== null;
}

async function stopProcess(cp: ChildProcess): Promise<void> {
  if (exited(cp)) return;
  const gone = new Promise<void>((r) => cp.once('exit', () => r()));
  cp.kill('SIGTERM');
  const t = setTimeout(() => cp.kill('SIGKILL'), 5_000);
  await gone;
  clearTimeout(t);
}

function cleanupSync(): void {
  for (const cp of children) cp.kill('SIGKILL');
  children.clear();
  if (tmpRoot && !args.keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
}
process.on('exit', cleanupSync);
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping`);
    void (cluster?.stop() ?? Promise.resolve()).finally(() => {
      cleanupSync();
      process.exit(code);
    });
  });
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A process whose stdout and stderr go to `logFile`. */
function spawnLogged(command: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logFile, 'a');
  const cp = track(spawn(command, argv, { env, stdio: ['ignore', fd, fd] }));
  closeSync(fd);
  return cp;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, alive?: () => string | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = alive?.();
    if (dead) throw new Error(`${what}: ${dead}`);
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
    await sleep(200);
  }
}

// --------------------------------------------------------------- the client

/** Where one way reaches one target: a URL prefix the target's own path is appended to. */
interface Endpoint {
  prefix: string;
  headers: Record<string, string>;
  agent: HttpAgent;
  ca?: string;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  bytes: number;
  /** Only when asked for: the body as text. */
  text?: string;
  ms: number;
}

function send(ep: Endpoint, path: string, options: { method?: string; body?: string; keepText?: boolean; contentType?: string } = {}): Promise<Reply> {
  const url = new URL(ep.prefix + path);
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const headers: Record<string, string> = { ...ep.headers };
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    const requestOptions = { method: options.method ?? 'GET', headers, agent: ep.agent, ...(ep.ca ? { ca: ep.ca } : {}) };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, requestOptions, (res) => {
      let bytes = 0;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (options.keepText) parts.push(c);
      });
      res.on('end', () =>
        resolvePromise({
          status: res.statusCode ?? 0,
          headers: res.headers,
          bytes,
          ms: performance.now() - started,
          ...(options.keepText ? { text: Buffer.concat(parts).toString('utf8') } : {}),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    // A proxy that stalls fails its way rather than hanging the run.
    req.setTimeout(requestIdleTimeoutMs, () => req.destroy(new Error(`no data for ${requestIdleTimeoutMs / 1000}s from ${url.host}`)));
    req.end(options.body);
  });
}

function newAgent(https: boolean): HttpAgent {
  // One connection per way and target, kept open: requests go one at a time.
  const o = { keepAlive: true, maxSockets: 1, keepAliveMsecs: 60_000 };
  return https ? new HttpsAgent(o) : new HttpAgent(o);
}

// ------------------------------------------------------------------ targets

interface Pki {
  caPem: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

async function makePki(dir: string): Promise<Pki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority('hawser-bench-proxy-ca');
  const serving = await createServingCertificate(ca, [...new Set(['localhost', '127.0.0.1', hopHost])]);
  const pki = { caPem: ca.certPem, caFile: join(dir, 'ca.crt'), certFile: join(dir, 'serving.crt'), keyFile: join(dir, 'serving.key') };
  writeFileSync(pki.caFile, ca.certPem);
  writeFileSync(pki.certFile, serving.certPem);
  writeFileSync(pki.keyFile, serving.keyPem, { mode: 0o600 });
  return pki;
}

interface TargetServer {
  cp: ChildProcess;
  httpPort: number;
  httpsPort: number;
}

async function startTargetServer(pki: Pki): Promise<TargetServer> {
  const cp = track(fork(join(here, 'target-server.js'), [pki.certFile, pki.keyFile], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  return new Promise((resolvePromise, reject) => {
    cp.once('message', (m: FromTargetServer) =>
      m.type === 'listening' ? resolvePromise({ cp, httpPort: m.httpPort, httpsPort: m.httpsPort }) : reject(new Error(`target server: ${m.message}`)),
    );
    cp.once('exit', (code) => reject(new Error(`target server exited with ${code}`)));
  });
}

/**
 * RBAC for the operator the hawser agent impersonates (Impersonate-User: the
 * operator's name), and ConfigMaps of 512 KB in their own namespace, listed as
 * the kube-apiserver's large response.
 */
async function seedKube(kube: Endpoint, count: number): Promise<void> {
  const binding = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'hawser-bench-operator' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: operatorName }],
  };
  const rb = await send(kube, '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { method: 'POST', body: JSON.stringify(binding), keepText: true });
  if (rb.status !== 201) throw new Error(`create clusterrolebinding for user ${operatorName}: ${rb.status} ${rb.text}`);
  const ns = await send(kube, '/api/v1/namespaces', { method: 'POST', body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: benchNamespace } }), keepText: true });
  if (ns.status !== 201) throw new Error(`create namespace ${benchNamespace}: ${ns.status} ${ns.text}`);
  for (let i = 0; i < count; i++) {
    // Random, so that no hop gains by compressing it.
    const blob = randomBytes(((configMapBytes - 1024) * 3) / 4).toString('base64');
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `blob-${i}` }, data: { blob } });
    const r = await send(kube, `/api/v1/namespaces/${benchNamespace}/configmaps`, { method: 'POST', body, keepText: true });
    if (r.status !== 201) throw new Error(`create configmap blob-${i}: ${r.status} ${r.text?.slice(0, 300)}`);
  }
}

// ------------------------------------------------------------------- hawser

interface Proxy {
  /** Processes whose CPU is the proxy's cost. */
  pids: () => number[];
  kube: Endpoint;
  http: Endpoint;
  notes: string[];
  stop(): Promise<void>;
}

async function startHawser(dir: string, pki: Pki, kubeconfigPath: string, target: TargetServer): Promise<Proxy> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const [tunnelPort, apiPort] = [await freePort(), await freePort()];
  const operatorTokensFile = join(dir, 'operator-tokens');
  writeFileSync(operatorTokensFile, `operators: [{ name: ${operatorName}, role: admin, token: ${operatorToken} }]\n`, { mode: 0o600 });
  const bootstrapTokenFile = join(dir, 'bootstrap-token');
  writeFileSync(bootstrapTokenFile, `${bootstrapToken}\n`, { mode: 0o600 });
  const hubLog = join(dir, 'hub.log');
  const agentLog = join(dir, 'agent.log');
  const env = { ...process.env, HAWSER_LOG_LEVEL: 'warn' };
  const hawser = args.hawserBin;
  const hub = spawnLogged(
    process.execPath,
    [
      ...args.hawserNodeFlags,
      hawser, 'hub',
      '--data-dir', join(dir, 'hub'),
      '--listen', `127.0.0.1:${tunnelPort}`,
      '--api-address', `${hopHost}:${apiPort}`,
      '--bootstrap-token-file', bootstrapTokenFile,
      '--operator-tokens-file', operatorTokensFile,
      '--metrics-anonymous',
      '--auto-approve',
      '--tls-cert-file', pki.certFile,
      '--tls-key-file', pki.keyFile,
    ],
    hubLog,
    env,
  );
  const api = `${args.proxyHop}://${hopHost}:${apiPort}`;
  const hubDead = () => (exited(hub) ? `hub exited (${hub.exitCode ?? hub.signalCode}):\n${tail(hubLog)}` : undefined);
  const hubApi = (headers: Record<string, string>): Endpoint => ({ prefix: api, headers, agent: newAgent(args.proxyHop === 'https'), ca: pki.caPem });
  await waitFor('hub /healthz', 30_000, async () => ((await send(hubApi({}), '/healthz')).status === 200 ? true : undefined), hubDead);
  const agentHelp = await new Promise<string>((resolvePromise) => {
    const cp = spawn(process.execPath, [hawser, 'agent', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    cp.stdout.on('data', (c: Buffer) => (out += c.toString()));
    cp.stderr.on('data', (c: Buffer) => (out += c.toString()));
    cp.once('exit', () => resolvePromise(out));
  });
  const agent = spawnLogged(
    process.execPath,
    [
      ...args.hawserNodeFlags,
      hawser, 'agent',
      '--parent-url', `127.0.0.1:${tunnelPort}`,
      '--parent-ca-file', pki.caFile,
      '--bootstrap-token-file', bootstrapTokenFile,
      '--cluster-reg-name', edgeName,
      '--cache-dir', join(dir, 'agent'),
      '--kubeconfig', kubeconfigPath,
      // The https target's certificate is from the bench CA (a build without the proxy has no such flag).
      ...(agentHelp.includes('--proxy-ca-file') ? ['--proxy-ca-file', pki.caFile] : []),
    ],
    agentLog,
    env,
  );
  const anyDead = () => hubDead() ?? (exited(agent) ? `agent exited (${agent.exitCode ?? agent.signalCode}):\n${tail(agentLog)}` : undefined);
  const auth = { authorization: `Bearer ${operatorToken}` };
  const { name, clusterId } = await waitFor(
    `cluster ${edgeName} Ready on the hub`,
    60_000,
    async () => {
      const list = JSON.parse((await send(hubApi(auth), '/api/v1/clusters', { keepText: true })).text!) as {
        items: Array<{ metadata: { name: string; labels?: Record<string, string> }; spec: { clusterId: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>;
      };
      const c = list.items.find((i) => i.status?.conditions?.some((k) => k.type === 'Ready' && k.status === 'True'));
      return c ? { name: c.metadata.name, clusterId: c.spec.clusterId } : undefined;
    },
    anyDead,
  );
  const stop = async () => {
    await stopProcess(agent);
    await stopProcess(hub);
  };
  const kube: Endpoint = { ...hubApi(auth), prefix: `${api}/clusters/${name}` };
  const targetPort = args.targetScheme === 'https' ? target.httpsPort : target.httpPort;
  const http: Endpoint = {
    prefix: `${api}/apis/proxies.clusternet.io/v1alpha1/sockets/${clusterId}/proxy/${args.targetScheme}/127.0.0.1:${targetPort}`,
    headers: auth,
    agent: newAgent(args.proxyHop === 'https'),
    ca: pki.caPem,
  };
  log(`hawser: cluster ${name} (${clusterId}) Ready; kube via ${kube.prefix}, http via ${http.prefix}`);
  return { pids: () => [hub.pid!, agent.pid!], kube, http, notes: [`hub log ${hubLog}, agent log ${agentLog}`], stop };
}

// ------------------------------------------------------------- remotedialer

function buildRemotedialer(): Promise<string> {
  const script = join(repoRoot, 'bench', 'proxy', 'remotedialer', 'build.sh');
  return new Promise((resolvePromise, reject) => {
    const cp = track(spawn('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    cp.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    cp.once('exit', (code) => (code === 0 ? resolvePromise(out.trim().split('\n').pop()!) : reject(new Error(`${script} exited with ${code}`))));
  });
}

async function startRemotedialer(dir: string, pki: Pki, kubeCaPem: string, kubePort: number, kubeToken: string, target: TargetServer): Promise<Proxy> {
  const bin = await buildRemotedialer();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const targetCaFile = join(dir, 'target-ca.crt');
  writeFileSync(targetCaFile, `${kubeCaPem.trimEnd()}\n${pki.caPem}`);
  const env = { ...process.env, REMOTEDIALER_BENCH_TOKEN: remotedialerToken };
  const serverLog = join(dir, 'server.log');
  const clientLog = join(dir, 'client.log');
  const serverLogFd = openSync(serverLog, 'a');
  const server = track(
    spawn(
      bin,
      [
        'server',
        '--tls-cert-file', pki.certFile,
        '--tls-key-file', pki.keyFile,
        '--target-ca-file', targetCaFile,
        '--proxy-listen', `${hopHost}:0`,
        ...(args.proxyHop === 'https' ? ['--proxy-tls'] : []),
      ],
      {
      env,
      stdio: ['ignore', 'pipe', serverLogFd],
    }),
  );
  closeSync(serverLogFd);
  const ports = await new Promise<{ tunnel: string; proxy: string }>((resolvePromise, reject) => {
    createInterface({ input: server.stdout! }).on('line', (line) => {
      const m = /^listening tunnel=(\S+) proxy=(\S+)$/.exec(line);
      if (m) resolvePromise({ tunnel: m[1]!, proxy: m[2]! });
    });
    server.once('exit', (code) => reject(new Error(`remotedialer server exited with ${code}:\n${tail(serverLog)}`)));
  });
  const client = spawnLogged(bin, ['client', '--connect', `wss://${ports.tunnel}/connect`, '--id', edgeName, '--ca-file', pki.caFile], clientLog, env);
  const anyDead = () =>
    exited(server) ? `remotedialer server exited:\n${tail(serverLog)}` : exited(client) ? `remotedialer client exited:\n${tail(clientLog)}` : undefined;
  const proxyBase = `${args.proxyHop}://${ports.proxy}/proxy/${edgeName}`;
  const hop = { agent: newAgent(args.proxyHop === 'https'), ca: pki.caPem };
  const kube: Endpoint = { prefix: `${proxyBase}/https/127.0.0.1:${kubePort}`, headers: { authorization: `Bearer ${kubeToken}` }, ...hop };
  const targetPort = args.targetScheme === 'https' ? target.httpsPort : target.httpPort;
  const http: Endpoint = { prefix: `${proxyBase}/${args.targetScheme}/127.0.0.1:${targetPort}`, headers: {}, ...hop, agent: newAgent(args.proxyHop === 'https') };
  // The server answers 503 until the client's tunnel is up.
  await waitFor('remotedialer tunnel up', 30_000, async () => ((await send(http, '/small')).status === 200 ? true : undefined), anyDead);
  log(`remotedialer: tunnel up (${bin}); kube via ${kube.prefix}`);
  return {
    pids: () => [server.pid!, client.pid!],
    kube,
    http,
    notes: [`server log ${serverLog}, client log ${clientLog}`],
    stop: async () => {
      await stopProcess(client);
      await stopProcess(server);
    },
  };
}

// -------------------------------------------------------------- measurement

type Target = 'kube' | 'http';
const targets: readonly Target[] = ['kube', 'http'];
const smallPath: Record<Target, string> = { kube: '/api/v1/namespaces/default', http: '/small' };

interface WaySetup {
  way: Way;
  kube: Endpoint;
  http: Endpoint;
  pids: () => number[];
}

interface WayResult {
  latencyMs: Record<Target, number[]>;
  large: Record<Target, Array<{ bytes: number; ms: number }>>;
  /** CPU ms of the proxy's processes while large responses went through, and the bytes they moved. */
  largeCpuMs: number;
  largeBytes: number;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(bytes < 10 << 20 ? 1 : 0)} MiB`;
}

function rotated<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length]!);
}

async function expectOk(reply: Reply | Promise<Reply>, what: string): Promise<Reply> {
  const r = await reply;
  if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status}`);
  return r;
}

/**
 * Runs the measurement. A proxied way whose request fails (an error status, a
 * broken or short answer) is dropped with the reason in `failed`, and the
 * others go on; a failure of direct ends the run.
 */
async function measure(
  setups: WaySetup[],
  largePath: Record<Target, string | undefined>,
  expectedLarge: Record<Target, number>,
  failed: Partial<Record<Way, string>>,
): Promise<Map<Way, WayResult>> {
  const results = new Map<Way, WayResult>(
    setups.map((s) => [s.way, { latencyMs: { kube: [], http: [] }, large: { kube: [], http: [] }, largeCpuMs: 0, largeBytes: 0 }]),
  );
  let active = [...setups];
  const guarded = async (s: WaySetup, work: () => Promise<void>): Promise<void> => {
    try {
      await work();
    } catch (err) {
      if (s.way === 'direct') throw err;
      failed[s.way] = `failed during the measurement: ${(err as Error).message}`;
      log(`${s.way}: ${failed[s.way]}; going on without it`);
      results.delete(s.way);
      active = active.filter((a) => a !== s);
    }
  };
  for (const s of setups) {
    await guarded(s, async () => {
      for (const t of targets) for (let i = 0; i < args.warmup; i++) await expectOk(send(s[t], smallPath[t]), `${s.way} ${t} warmup`);
    });
  }
  const perRound = Math.ceil(args.smallRequests / args.rounds);
  for (let round = 0; round < args.rounds; round++) {
    for (const s of rotated(active, round)) {
      await guarded(s, async () => {
        const r = results.get(s.way)!;
        for (const t of targets) {
          const n = Math.min(perRound, args.smallRequests - r.latencyMs[t].length);
          for (let i = 0; i < n; i++) r.latencyMs[t].push((await expectOk(send(s[t], smallPath[t]), `${s.way} ${t} GET`)).ms);
        }
      });
    }
    log(`small GETs: round ${round + 1}/${args.rounds}`);
  }
  for (let rep = 0; rep < args.largeReps; rep++) {
    for (const s of rotated(active, rep)) {
      await guarded(s, async () => {
        const r = results.get(s.way)!;
        for (const t of targets) {
          const path = largePath[t];
          if (!path) continue;
          const cpu0 = s.pids().reduce((sum, pid) => sum + readCpuMs(pid), 0);
          const reply = await expectOk(send(s[t], path), `${s.way} ${t} large`);
          r.largeCpuMs += s.pids().reduce((sum, pid) => sum + readCpuMs(pid), 0) - cpu0;
          r.largeBytes += reply.bytes;
          // The kube list's resourceVersion may gain a digit between reads.
          if (Math.abs(reply.bytes - expectedLarge[t]) > 64) throw new Error(`${s.way} ${t} large: ${reply.bytes} bytes, direct gave ${expectedLarge[t]}`);
          r.large[t].push({ bytes: reply.bytes, ms: reply.ms });
        }
      });
    }
    log(`large responses: repetition ${rep + 1}/${args.largeReps}`);
  }
  return results;
}

// --------------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = new Date();
  const loadAtStart = loadavg()[0]!;
  tmpRoot = await mkdtemp(join(tmpdir(), 'hawser-bench-proxy-'));
  log(`temp dir ${tmpRoot}${args.keepTmp ? ' (kept)' : ''}`);
  const pki = await makePki(join(tmpRoot, 'pki'));
  // Built first: on a cold cache the build takes a minute or two, better before the cluster runs.
  if (args.ways.includes('remotedialer')) await buildRemotedialer();
  const target = await startTargetServer(pki);
  log('starting the child kube-apiserver');
  cluster = await startKubeCluster({ name: 'bench-proxy', baseDir: tmpRoot });
  const kubePort = Number(new URL(cluster.url).port);
  const direct: WaySetup = {
    way: 'direct',
    kube: { prefix: cluster.url, headers: { authorization: `Bearer ${cluster.token}` }, agent: newAgent(true), ca: cluster.caPem },
    http:
      args.targetScheme === 'https'
        ? { prefix: `https://127.0.0.1:${target.httpsPort}`, headers: {}, agent: newAgent(true), ca: pki.caPem }
        : { prefix: `http://127.0.0.1:${target.httpPort}`, headers: {}, agent: newAgent(false) },
    pids: () => [],
  };
  const configMaps = Math.ceil(args.kubeListBytes / configMapBytes);
  // The operator's RBAC is needed with or without ConfigMaps (--kube-list-bytes 0).
  if (configMaps > 0) log(`seeding ${configMaps} ConfigMaps of ${configMapBytes / 1024} KB`);
  await seedKube(direct.kube, configMaps);
  const largePath: Record<Target, string | undefined> = {
    kube: configMaps > 0 ? `/api/v1/namespaces/${benchNamespace}/configmaps` : undefined,
    http: `/large?bytes=${args.largeBytes}`,
  };
  const expectedLarge: Record<Target, number> = {
    kube: largePath.kube ? (await expectOk(send(direct.kube, largePath.kube), 'direct kube list')).bytes : 0,
    http: args.largeBytes,
  };

  const proxies: Proxy[] = [];
  const setups: WaySetup[] = [direct];
  const unavailable: Partial<Record<Way, string>> = {};
  try {
    for (const way of args.ways) {
      if (way === 'direct') continue;
      try {
        const proxy =
          way === 'hawser'
            ? await startHawser(join(tmpRoot, 'hawser'), pki, cluster.kubeconfigPath, target)
            : await startRemotedialer(join(tmpRoot, 'remotedialer'), pki, cluster.caPem, kubePort, cluster.token, target);
        proxies.push(proxy);
        // Every path must answer before anything is timed: a way that cannot is left out, with the reason.
        for (const t of targets) {
          const probe = await send(proxy[t], smallPath[t], { keepText: true });
          if (probe.status !== 200) throw new Error(`GET ${proxy[t].prefix}${smallPath[t]}: HTTP ${probe.status}: ${probe.text?.slice(0, 300)}`);
        }
        setups.push({ way, kube: proxy.kube, http: proxy.http, pids: proxy.pids });
      } catch (err) {
        unavailable[way] = (err as Error).message;
        log(`${way}: NOT MEASURED: ${(err as Error).message}`);
      }
    }

    log(`measuring ${setups.map((s) => s.way).join(', ')}: ${args.smallRequests} small GETs per target, ${args.largeReps} large responses per target`);
    const results = await measure(setups, largePath, expectedLarge, unavailable);

    const values = (get: (r: WayResult) => number): Partial<Record<Way, number>> =>
      Object.fromEntries([...results].map(([w, r]) => [w, get(r)]));
    const rows: MetricRow[] = [];
    for (const t of targets) {
      const label = t === 'kube' ? 'kube-apiserver GET' : 'HTTP server GET';
      rows.push({ label: `${label} p50`, kind: 'latency', unit: 'ms', values: values((r) => summariseLatency(r.latencyMs[t]).p50Ms) });
      rows.push({ label: `${label} p99`, kind: 'latency', unit: 'ms', values: values((r) => summariseLatency(r.latencyMs[t]).p99Ms) });
    }
    if (largePath.kube) {
      rows.push({ label: `kube-apiserver LIST ${mib(expectedLarge.kube)}`, kind: 'throughput', unit: 'MB/s', values: values((r) => summariseThroughput(r.large.kube).mbPerSec) });
    }
    rows.push({ label: `HTTP server ${mib(args.largeBytes)}`, kind: 'throughput', unit: 'MB/s', values: values((r) => summariseThroughput(r.large.http).mbPerSec) });

    const cpuPerGb = values((r) => (r.largeBytes > 0 && r.largeCpuMs >= 0 ? r.largeCpuMs / 1000 / (r.largeBytes / 1e9) : Number.NaN));
    const loadAtEnd = loadavg()[0]!;
    console.log(
      `\nbench/proxy: ${cpus().length} cores, load average ${loadAtStart.toFixed(1)} at start and ${loadAtEnd.toFixed(1)} at end, ` +
        `${process.version}, kube-apiserver ${cluster.version}, plain target over ${args.targetScheme}, client to proxies over ${args.proxyHop} (${hopHost})`,
    );
    console.log(`${args.smallRequests} small GETs per target per way (after ${args.warmup} warm-up), one at a time on one kept-alive connection; ${args.largeReps} large responses (median rate)\n`);
    console.log(renderTable(rows));
    console.log('');
    for (const w of ways) {
      if (unavailable[w]) console.log(`- ${w}: not measured: ${unavailable[w]}`);
      else if (w !== 'direct' && cpuPerGb[w] !== undefined) console.log(`- ${w}: its processes used ${cpuPerGb[w]!.toFixed(1)} CPU s per GB of large responses`);
    }
    const misses = rows.filter((r) => {
      const v = verdict(r);
      return v.withinAim === false || v.aheadOfRemotedialer === false;
    });
    if (misses.length > 0) console.log(`- hawser misses an aim on: ${misses.map((r) => r.label).join('; ')}`);

    const resultsDir = join(repoRoot, 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `proxy-${started.toISOString().slice(0, 19).replace(/:/g, '-')}.json`);
    const report = {
      benchmark: 'bench/proxy',
      startedAt: started.toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, kubeApiserver: cluster.version, loadAverage: { start: loadAtStart, end: loadAtEnd } },
      settings: args,
      unavailable,
      rows: rows.map((r) => ({ ...r, ...verdict(r) })),
      cpuSecondsPerGb: cpuPerGb,
      latency: Object.fromEntries([...results].map(([w, r]) => [w, { kube: summariseLatency(r.latencyMs.kube), http: summariseLatency(r.latencyMs.http) }])),
      throughput: Object.fromEntries([...results].map(([w, r]) => [w, { kube: summariseThroughput(r.large.kube), http: summariseThroughput(r.large.http), runs: r.large }])),
    };
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nresults: ${resolve(file)}`);
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await stopProcess(target.cp);
    await cluster.stop();
    cluster = undefined;
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:proxy failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
