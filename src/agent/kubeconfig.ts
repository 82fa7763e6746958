import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { boundedText } from '../api/core.js';
import { parseKubeconfigYaml } from './kubeconfig-yaml.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// The agent's way to credentials for its own API server. @kubernetes/client-node's
// KubeConfig does this too, but importing it loads every generated API model:
// 114 MB of RSS for a process whose whole aim is 70 MB (issue 7 §6). The agent
// needs only a kubeconfig's TLS material and credentials, so this reads the
// file format itself: tokens and token files, client certificates, basic
// auth, exec credential plugins, and the in-cluster service account. Legacy
// auth-provider plugins (gcp, azure, oidc) are refused by name: exec replaced them.
//
// client-node's KubeConfig also satisfies KubeAccess, so tools and tests that
// already hold one can pass it where the agent takes a KubeAccess.

// yaml costs ~6 MB of RSS once loaded, to read a file of a few KB: a kubeconfig
// in the block YAML kubectl writes is read without it (kubeconfig-yaml.ts), and
// yaml loads only for anything else (synchronously, as all of this is; yaml
// ships CommonJS).
const requireModule = createRequire(import.meta.url);
const parseYaml = (text: string): unknown => parseKubeconfigYaml(text) ?? (requireModule('yaml') as typeof import('yaml')).parse(text);

/** What a request to the API server needs: where, and how to authenticate. */
export interface KubeAccess {
  getCurrentCluster(): { server: string; proxyUrl?: string | undefined } | null;
  /** Sets ca/cert/key/rejectUnauthorized/servername and the Authorization header. */
  applyToHTTPSOptions(options: RequestOptions): Promise<void>;
}

interface NamedEntry<T> {
  name?: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

interface ClusterEntry {
  server?: unknown;
  'certificate-authority'?: unknown;
  'certificate-authority-data'?: unknown;
  'insecure-skip-tls-verify'?: unknown;
  'tls-server-name'?: unknown;
  'proxy-url'?: unknown;
}

interface ExecConfig {
  command?: unknown;
  args?: unknown;
  env?: unknown;
  apiVersion?: unknown;
}

interface UserEntry {
  token?: unknown;
  tokenFile?: unknown;
  'client-certificate'?: unknown;
  'client-certificate-data'?: unknown;
  'client-key'?: unknown;
  'client-key-data'?: unknown;
  username?: unknown;
  password?: unknown;
  exec?: ExecConfig;
  'auth-provider'?: { name?: unknown };
}

interface ContextEntry {
  cluster?: unknown;
  user?: unknown;
}

/** How the user authenticates, resolved once at load; secrets are read per request where they may rotate. */
type Credential =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  | { kind: 'token-file'; path: string }
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'exec'; exec: ExecPlugin };

interface ExecPlugin {
  command: string;
  args: string[];
  env: Record<string, string>;
  apiVersion: string;
}

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';
/** Bound service-account tokens rotate (kubelet refreshes the file); reread at most this often. */
const tokenFileTtlMs = 60_000;
const execTimeoutMs = 30_000;

function invalid(source: string, what: string): HawserError {
  return new HawserError(ErrorCode.InvalidOption, `kubeconfig ${source}: ${what}`);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export class LeanKubeConfig implements KubeAccess {
  private tokenCache: { value: string; until: number } | undefined;

  private constructor(
    private readonly cluster: { server: string; proxyUrl?: string },
    private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean; servername?: string },
    private readonly credential: Credential,
    private readonly now: () => number = Date.now,
  ) {}

  getCurrentCluster(): { server: string; proxyUrl?: string } {
    return this.cluster;
  }

  async applyToHTTPSOptions(options: RequestOptions): Promise<void> {
    if (this.tls.ca) options.ca = this.tls.ca;
    if (this.tls.cert) options.cert = this.tls.cert;
    if (this.tls.key) options.key = this.tls.key;
    options.rejectUnauthorized = this.tls.rejectUnauthorized;
    if (this.tls.servername) options.servername = this.tls.servername;
    const authorization = await this.authorization();
    if (authorization) options.headers = { ...(options.headers as Record<string, string> | undefined), authorization };
  }

  private async authorization(): Promise<string | undefined> {
    const c = this.credential;
    switch (c.kind) {
      case 'none':
        return undefined;
      case 'token':
        return `Bearer ${c.token}`;
      case 'basic':
        return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
      case 'token-file': {
        if (!this.tokenCache || this.now() >= this.tokenCache.until) {
          const value = (await readFile(c.path, 'utf8')).trim();
          this.tokenCache = { value, until: this.now() + tokenFileTtlMs };
        }
        return `Bearer ${this.tokenCache.value}`;
      }
      case 'exec': {
        if (!this.tokenCache || this.now() >= this.tokenCache.until) this.tokenCache = await runExecPlugin(c.exec, this.now);
        return `Bearer ${this.tokenCache.value}`;
      }
    }
  }

  /** Parses kubeconfig text; relative paths resolve against `baseDir`, as kubectl does. */
  static fromText(text: string, source: string, baseDir: string, now: () => number = Date.now): LeanKubeConfig {
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (cause) {
      throw new HawserError(ErrorCode.InvalidOption, `kubeconfig ${source}: not YAML: ${boundedText((cause as Error).message, 200)}`, { cause });
    }
    if (!doc || typeof doc !== 'object') throw invalid(source, 'is not a mapping');
    const d = doc as { 'current-context'?: unknown; contexts?: unknown; clusters?: unknown; users?: unknown };
    const contextName = str(d['current-context']);
    if (!contextName) throw invalid(source, 'has no current-context');
    const find = <T>(list: unknown, field: 'cluster' | 'user' | 'context', name: string): T => {
      const entries = Array.isArray(list) ? (list as NamedEntry<T>[]) : [];
      const hit = entries.find((e) => e && typeof e === 'object' && e.name === name);
      const body = hit?.[field];
      if (!body || typeof body !== 'object') throw invalid(source, `${field} ${JSON.stringify(boundedText(name, 100))} is not defined`);
      return body;
    };
    const context = find<ContextEntry>(d.contexts, 'context', contextName);
    const clusterName = str(context.cluster);
    if (!clusterName) throw invalid(source, `context ${JSON.stringify(boundedText(contextName, 100))} names no cluster`);
    const cluster = find<ClusterEntry>(d.clusters, 'cluster', clusterName);
    const userName = str(context.user);
    const user: UserEntry = userName ? find<UserEntry>(d.users, 'user', userName) : {};
    const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
    const fileOrData = (fileKey: string, dataKey: string, entry: Record<string, unknown>): Buffer | undefined => {
      const data = str(entry[dataKey]);
      if (data) return Buffer.from(data, 'base64');
      const file = str(entry[fileKey]);
      if (!file) return undefined;
      try {
        return readFileSync(path(file));
      } catch (cause) {
        throw new HawserError(ErrorCode.InvalidOption, `kubeconfig ${source}: ${fileKey} ${file}: ${(cause as Error).message}`, { cause });
      }
    };

    const server = str(cluster.server);
    if (!server) throw invalid(source, `cluster ${JSON.stringify(boundedText(clusterName, 100))} has no server`);
    try {
      new URL(server);
    } catch {
      throw invalid(source, `cluster ${JSON.stringify(boundedText(clusterName, 100))} server ${JSON.stringify(boundedText(server, 200))} is not a URL`);
    }
    const proxyUrl = str(cluster['proxy-url']);
    if (proxyUrl) throw invalid(source, `cluster ${JSON.stringify(boundedText(clusterName, 100))} sets proxy-url, which the agent does not support; reach the API server directly`);
    const servername = str(cluster['tls-server-name']);
    const ca = fileOrData('certificate-authority', 'certificate-authority-data', cluster as Record<string, unknown>);
    const cert = fileOrData('client-certificate', 'client-certificate-data', user as Record<string, unknown>);
    const key = fileOrData('client-key', 'client-key-data', user as Record<string, unknown>);
    const tls = {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true,
      ...(servername ? { servername } : {}),
    };
    if (Boolean(tls.cert) !== Boolean(tls.key)) throw invalid(source, `user ${JSON.stringify(boundedText(userName ?? '', 100))} has a client certificate without a key, or a key without a certificate`);

    let credential: Credential = { kind: 'none' };
    const provider = user['auth-provider'];
    if (provider) throw invalid(source, `user ${JSON.stringify(boundedText(userName ?? '', 100))} uses auth-provider ${JSON.stringify(boundedText(String(provider.name ?? ''), 100))}, which is not supported; use an exec credential plugin`);
    if (str(user.token)) credential = { kind: 'token', token: str(user.token)! };
    else if (str(user.tokenFile)) credential = { kind: 'token-file', path: path(str(user.tokenFile)!) };
    else if (str(user.username) && str(user.password)) credential = { kind: 'basic', username: str(user.username)!, password: str(user.password)! };
    else if (user.exec) credential = { kind: 'exec', exec: execPlugin(user.exec, source, baseDir) };
    return new LeanKubeConfig({ server }, tls, credential, now);
  }

  /** The pod's service account, as client-go's in-cluster config reads it. */
  static inCluster(env: NodeJS.ProcessEnv, dir = serviceAccountDir, now: () => number = Date.now): LeanKubeConfig {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (!host || !port) throw new HawserError(ErrorCode.InvalidOption, 'in-cluster config needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT');
    let ca: Buffer;
    try {
      ca = readFileSync(join(dir, 'ca.crt'));
    } catch (cause) {
      throw new HawserError(ErrorCode.InvalidOption, `in-cluster config: ${join(dir, 'ca.crt')}: ${(cause as Error).message}`, { cause });
    }
    const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new LeanKubeConfig({ server }, { ca, rejectUnauthorized: true }, { kind: 'token-file', path: join(dir, 'token') }, now);
  }
}

function execPlugin(e: ExecConfig, source: string, baseDir: string): ExecPlugin {
  const command = str(e.command);
  if (!command) throw invalid(source, 'exec plugin has no command');
  const args = Array.isArray(e.args) ? e.args.map(String) : [];
  const env: Record<string, string> = {};
  if (Array.isArray(e.env)) for (const v of e.env as Array<{ name?: unknown; value?: unknown }>) if (str(v?.name)) env[String(v.name)] = String(v.value ?? '');
  // A command with a slash is relative to the kubeconfig, as in client-go; a bare name is looked up in PATH.
  const resolved = command.includes('/') && !isAbsolute(command) ? resolve(baseDir, command) : command;
  return { command: resolved, args, env, apiVersion: str(e.apiVersion) ?? 'client.authentication.k8s.io/v1' };
}

/** Runs an exec credential plugin; the token is kept until its expiry (or a minute when none is given). */
async function runExecPlugin(p: ExecPlugin, now: () => number): Promise<{ value: string; until: number }> {
  const execInfo = JSON.stringify({ apiVersion: p.apiVersion, kind: 'ExecCredential', spec: { interactive: false } });
  const stdout = await new Promise<string>((done, fail) => {
    execFile(p.command, p.args, { env: { ...process.env, ...p.env, KUBERNETES_EXEC_INFO: execInfo }, timeout: execTimeoutMs, maxBuffer: 1024 * 1024 }, (err, out, errOut) => {
      if (err) fail(new HawserError(ErrorCode.Unavailable, `exec credential plugin ${p.command} failed: ${boundedText(String(errOut || err.message), 300)}`, { cause: err }));
      else done(out);
    });
  });
  let status: { token?: unknown; expirationTimestamp?: unknown } | undefined;
  try {
    status = (JSON.parse(stdout) as { status?: typeof status }).status;
  } catch {
    throw new HawserError(ErrorCode.Unavailable, `exec credential plugin ${p.command} printed no ExecCredential JSON`);
  }
  const token = str(status?.token);
  if (!token) throw new HawserError(ErrorCode.Unavailable, `exec credential plugin ${p.command} returned no status.token (client certificates from plugins are not supported)`);
  const expiry = typeof status?.expirationTimestamp === 'string' ? Date.parse(status.expirationTimestamp) : NaN;
  return { value: token, until: Number.isFinite(expiry) ? expiry - 10_000 : now() + 60_000 };
}

/**
 * Loads what kubectl would use: the file given, else in-cluster when running
 * in a pod, else $KUBECONFIG (its first file; merging several is not
 * supported and is refused), else ~/.kube/config.
 */
export function loadKubeConfig(kubeconfig: string | undefined, env: NodeJS.ProcessEnv = process.env): LeanKubeConfig {
  if (!kubeconfig && env.KUBERNETES_SERVICE_HOST) return LeanKubeConfig.inCluster(env);
  let file = kubeconfig;
  if (!file && env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(delimiter).filter(Boolean);
    if (files.length > 1) throw new HawserError(ErrorCode.InvalidOption, `KUBECONFIG names ${files.length} files; the agent reads one: pass --kubeconfig`);
    file = files[0];
  }
  file ??= join(homedir(), '.kube', 'config');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new HawserError(ErrorCode.InvalidOption, `cannot load kubeconfig ${file}: ${(cause as Error).message}`, { cause });
  }
  return LeanKubeConfig.fromText(text, file, dirname(resolve(file)));
}
