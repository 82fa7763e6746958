import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestkitError, TestkitErrorCode, errorMessage } from './errors.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';
import { requireTestbedBinary } from './testbed.js';
import { defaultTracker, type Tracker } from './tracker.js';

export type ToxicStream = 'upstream' | 'downstream';

/**
 * A toxic to add. Types and their attributes (toxiproxy 2.x): latency
 * {latency, jitter} ms; bandwidth {rate} KB/s; slow_close {delay} ms;
 * timeout {timeout} ms (0 = hold forever); reset_peer {timeout} ms;
 * slicer {average_size, size_variation, delay µs}; limit_data {bytes}.
 */
export interface ToxicSpec {
  type: string;
  /** Default `<type>_<stream>`. */
  name?: string;
  /** upstream = client -> server, downstream = server -> client (default). */
  stream?: ToxicStream;
  /** Probability 0..1 that a connection is affected. Default 1. */
  toxicity?: number;
  attributes?: Record<string, number | string | boolean>;
}

export interface Toxic {
  name: string;
  type: string;
  stream: ToxicStream;
  toxicity: number;
  attributes: Record<string, unknown>;
}

export interface ToxiproxyProxy {
  readonly name: string;
  /** "127.0.0.1:port" where clients connect. */
  readonly listen: string;
  readonly port: number;
  /** "host:port" the proxy forwards to. */
  readonly upstream: string;
  /** Takes the proxy down: the listener closes and open connections drop. */
  disable(): Promise<void>;
  enable(): Promise<void>;
  addToxic(spec: ToxicSpec): Promise<Toxic>;
  /** Changes attributes (or toxicity) of an active toxic. */
  updateToxic(name: string, change: { toxicity?: number; attributes?: Record<string, number | string | boolean> }): Promise<Toxic>;
  removeToxic(name: string): Promise<void>;
  toxics(): Promise<Toxic[]>;
  delete(): Promise<void>;
}

export interface ProxyState {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics: Toxic[];
}

export interface Toxiproxy {
  /** Base URL of the REST API, e.g. "http://127.0.0.1:41234". */
  readonly url: string;
  readonly port: number;
  readonly process: ManagedProcess;
  /** Creates an enabled proxy listening on a fresh 127.0.0.1 port (or `listenPort`). */
  createProxy(name: string, upstream: string, options?: { listenPort?: number }): Promise<ToxiproxyProxy>;
  proxies(): Promise<Record<string, ProxyState>>;
  /** Enables every proxy and removes every toxic. */
  reset(): Promise<void>;
  version(): Promise<string>;
  /** Stops the server and removes its working directory. */
  stop(): Promise<void>;
}

export interface StartToxiproxyOptions {
  /** Names the process and its log file. Default "toxiproxy". */
  name?: string;
  /** Parent of the working directory (logs). Default os.tmpdir(). */
  baseDir?: string;
  /** Keep the working directory after stop (also: HAWSER_TESTKIT_KEEP=1). */
  keepDir?: boolean;
  startTimeoutMs?: number;
  tracker?: Tracker;
}

export class ToxiproxyApiError extends TestkitError {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    detail: string,
  ) {
    super(TestkitErrorCode.ToxiproxyApi, `toxiproxy ${method} ${path} answered ${status}: ${detail}`);
  }
}

const REQUEST_TIMEOUT_MS = 10_000;

class ToxiproxyClient {
  constructor(readonly url: string) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      throw new TestkitError(TestkitErrorCode.ToxiproxyApi, `toxiproxy ${method} ${path} failed: ${errorMessage(err)}`, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) {
      let detail = text.trim();
      try {
        const parsed = JSON.parse(text) as { error?: unknown };
        if (typeof parsed.error === 'string') detail = parsed.error;
      } catch {
        // not JSON; keep the raw text
      }
      throw new ToxiproxyApiError(res.status, method, path, detail || res.statusText);
    }
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      return text as T;
    }
  }
}

function proxyPath(name: string): string {
  return `/proxies/${encodeURIComponent(name)}`;
}

function portOf(listen: string): number {
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0) {
    throw new TestkitError(TestkitErrorCode.ToxiproxyApi, `toxiproxy returned an unusable listen address "${listen}"`);
  }
  return port;
}

function makeProxy(client: ToxiproxyClient, state: ProxyState): ToxiproxyProxy {
  const path = proxyPath(state.name);
  const toxicsPath = `${path}/toxics`;
  return {
    name: state.name,
    listen: state.listen,
    port: portOf(state.listen),
    upstream: state.upstream,
    async disable() {
      await client.request('PATCH', path, { enabled: false });
    },
    async enable() {
      await client.request('PATCH', path, { enabled: true });
    },
    addToxic(spec) {
      if (spec.toxicity !== undefined && !(spec.toxicity >= 0 && spec.toxicity <= 1)) {
        return Promise.reject(new TestkitError(TestkitErrorCode.InvalidArgument, `toxic ${spec.type}: toxicity must be within 0..1, got ${spec.toxicity}`));
      }
      return client.request<Toxic>('POST', toxicsPath, {
        type: spec.type,
        stream: spec.stream ?? 'downstream',
        toxicity: spec.toxicity ?? 1,
        attributes: spec.attributes ?? {},
        ...(spec.name === undefined ? {} : { name: spec.name }),
      });
    },
    updateToxic(name, change) {
      return client.request<Toxic>('PATCH', `${toxicsPath}/${encodeURIComponent(name)}`, change);
    },
    async removeToxic(name) {
      await client.request('DELETE', `${toxicsPath}/${encodeURIComponent(name)}`);
    },
    toxics() {
      return client.request<Toxic[]>('GET', toxicsPath);
    },
    async delete() {
      await client.request('DELETE', path);
    },
  };
}

/**
 * Starts `toxiproxy-server -host 127.0.0.1 -port <free>` and returns a typed
 * client over its REST API. Proxies listen on fresh tracked 127.0.0.1 ports.
 */
export async function startToxiproxy(options: StartToxiproxyOptions = {}): Promise<Toxiproxy> {
  const binary = requireTestbedBinary('toxiproxy-server');
  const name = options.name ?? 'toxiproxy';
  const tracker = options.tracker ?? defaultTracker;
  const keep = options.keepDir ?? process.env['HAWSER_TESTKIT_KEEP'] === '1';
  const workDir = await mkdtemp(join(options.baseDir ?? tmpdir(), `hawser-${name}-`));
  const port = await freePort({ owner: `${name} API`, tracker });
  const url = `http://127.0.0.1:${port}`;
  const client = new ToxiproxyClient(url);

  let proc: ManagedProcess | undefined;
  try {
    proc = await ManagedProcess.start({
      name,
      command: binary,
      args: ['-host', '127.0.0.1', '-port', String(port)],
      env: { LOG_LEVEL: process.env['HAWSER_TOXIPROXY_LOG_LEVEL'] ?? 'info' },
      logDir: workDir,
      ports: [port],
      stopGraceMs: 5_000,
      tracker,
    });
    await proc.waitFor(
      async (signal) => {
        const res = await fetch(`${url}/version`, { signal });
        return res.ok;
      },
      { timeoutMs: options.startTimeoutMs ?? 15_000, what: `toxiproxy API on ${url}`, intervalMs: 50 },
    );
  } catch (err) {
    await proc?.stop();
    if (!keep) await rm(workDir, { recursive: true, force: true });
    throw err;
  }
  const server = proc;

  let stopped: Promise<void> | undefined;
  return {
    url,
    port,
    process: server,
    async createProxy(proxyName, upstream, createOptions = {}) {
      const listenPort = createOptions.listenPort ?? (await freePort({ owner: `${name} proxy ${proxyName}`, tracker }));
      tracker.trackPort(listenPort, `${name} proxy ${proxyName}`);
      const state = await client.request<ProxyState>('POST', '/proxies', {
        name: proxyName,
        listen: `127.0.0.1:${listenPort}`,
        upstream,
        enabled: true,
      });
      return makeProxy(client, state);
    },
    proxies() {
      return client.request<Record<string, ProxyState>>('GET', '/proxies');
    },
    async reset() {
      await client.request('POST', '/reset');
    },
    async version() {
      const v = await client.request<unknown>('GET', '/version');
      if (typeof v === 'string') return v;
      if (v && typeof v === 'object' && 'version' in v) return String((v as { version: unknown }).version);
      return JSON.stringify(v);
    },
    stop() {
      stopped ??= (async () => {
        await server.stop();
        if (!keep) await rm(workDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
