import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ensurePrivateDir, writeFileAtomic } from '../cache/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// How client commands find the hub and their token, the way kubectl does: a
// config file of contexts (default ~/.hawser/config, or HAWSER_CONFIG), one of
// them current. Flags beat environment variables, which beat the context:
//   server: --hub, HAWSER_HUB, context.server, http://127.0.0.1:7101
//   token:  --token-file, HAWSER_TOKEN, context.token
//   CA:     --ca-file, context.certificate-authority-data (https only)
//
//   apiVersion: hawser.io/v1
//   kind: Config
//   current-context: demo
//   contexts:
//     - name: demo
//       server: http://127.0.0.1:7101
//       certificate-authority-data: <base64 PEM>   # for https
//       token: hwo_...

export const defaultHubServer = 'http://127.0.0.1:7101';

export interface HawserContext {
  name: string;
  server: string;
  'certificate-authority-data'?: string;
  token?: string;
}

export interface HawserConfig {
  apiVersion: 'hawser.io/v1';
  kind: 'Config';
  'current-context'?: string;
  contexts: HawserContext[];
}

/** Where the hub is and how to log in. */
export interface HubTarget {
  server: string;
  token?: string;
  caPem?: string;
  /** Which context was used, for messages. */
  context?: string;
}

export interface TargetFlags {
  hub?: string | undefined;
  tokenFile?: string | undefined;
  context?: string | undefined;
  caFile?: string | undefined;
}

type Env = Record<string, string | undefined>;

export function configPath(env: Env = process.env): string {
  return env.HAWSER_CONFIG || join(homedir(), '.hawser', 'config');
}

function invalid(path: string, what: string): HawserError {
  return new HawserError(ErrorCode.CliConfigInvalid, `hawser config ${path}: ${what}`);
}

/** The config at `path`; an empty one when the file does not exist. */
export async function readConfig(path: string): Promise<HawserConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { apiVersion: 'hawser.io/v1', kind: 'Config', contexts: [] };
    throw invalid(path, `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw invalid(path, `not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  const c = (doc ?? {}) as Partial<HawserConfig>;
  if (typeof c !== 'object' || (c.contexts !== undefined && !Array.isArray(c.contexts))) throw invalid(path, '"contexts" must be a list');
  for (const [i, ctx] of (c.contexts ?? []).entries()) {
    if (!ctx || typeof ctx.name !== 'string' || typeof ctx.server !== 'string') throw invalid(path, `contexts[${i}] needs a name and a server`);
  }
  return { apiVersion: 'hawser.io/v1', kind: 'Config', ...c, contexts: c.contexts ?? [] };
}

/** Adds or replaces a context (by name), optionally makes it current; written atomically, 0600. */
export async function saveContext(path: string, context: HawserContext, makeCurrent: boolean): Promise<void> {
  const config = await readConfig(path);
  config.contexts = [...config.contexts.filter((c) => c.name !== context.name), context];
  if (makeCurrent) config['current-context'] = context.name;
  await ensurePrivateDir(dirname(path));
  await writeFileAtomic(path, stringify(config), { mode: 0o600 });
}

function normalizeServer(raw: string): string {
  return (/^https?:\/\//.test(raw) ? raw : `http://${raw}`).replace(/\/+$/, '');
}

async function readSecretFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    throw new HawserError(ErrorCode.InvalidOption, `cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!text) throw new HawserError(ErrorCode.InvalidOption, `${what} ${path} is empty`);
  return text;
}

/** Resolves server, token and CA from flags, environment and the config file. */
export async function resolveHubTarget(flags: TargetFlags, env: Env = process.env): Promise<HubTarget> {
  const path = configPath(env);
  const config = await readConfig(path);
  const name = flags.context ?? config['current-context'];
  const ctx = name === undefined ? undefined : config.contexts.find((c) => c.name === name);
  if (flags.context !== undefined && !ctx) {
    throw invalid(path, `no context named "${flags.context}"; have: ${config.contexts.map((c) => c.name).join(', ') || 'none'}`);
  }
  const server = normalizeServer(flags.hub ?? (env.HAWSER_HUB || undefined) ?? ctx?.server ?? defaultHubServer);
  const token = flags.tokenFile ? await readSecretFile(flags.tokenFile, 'token file') : (env.HAWSER_TOKEN || undefined) ?? ctx?.token;
  const caPem = flags.caFile
    ? await readSecretFile(flags.caFile, 'CA file')
    : ctx?.['certificate-authority-data']
      ? Buffer.from(ctx['certificate-authority-data'], 'base64').toString('utf8')
      : undefined;
  return {
    server,
    ...(token ? { token } : {}),
    ...(caPem ? { caPem } : {}),
    ...(ctx ? { context: ctx.name } : {}),
  };
}
