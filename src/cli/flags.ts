import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseDuration } from '../tunnel/index.js';

// Flags in the Go/Clusternet style (--flag=value or --flag value), with one
// help text per command and errors that name the flag.

export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'HAWSER_USAGE';
}

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  help: string;
  default?: string;
}

export interface CommandSpec {
  usage: string;
  summary: string;
  flags: Record<string, FlagSpec>;
}

export function helpText(spec: CommandSpec): string {
  const lines = [spec.summary, '', `Usage: ${spec.usage}`, '', 'Flags:'];
  const entries = Object.entries({ ...spec.flags, help: { type: 'boolean', short: 'h', help: 'show this help' } as FlagSpec });
  for (const [name, f] of entries) {
    const left = `${f.short ? `-${f.short}, ` : '    '}--${name}${f.type === 'string' ? ' value' : ''}`;
    lines.push(`  ${left.padEnd(42)} ${f.help}${f.default !== undefined ? ` (default ${f.default})` : ''}`);
  }
  return lines.join('\n');
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  help: boolean;
}

export function parseFlags(spec: CommandSpec, argv: string[]): Parsed {
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals, help: values.help === true };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${helpText(spec)}`);
  }
}

export function stringFlag(p: Parsed, name: string, fallback?: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : fallback;
}

export function durationFlag(p: Parsed, name: string, fallbackMs: number): number {
  const v = stringFlag(p, name);
  if (v === undefined) return fallbackMs;
  try {
    return parseDuration(v, `--${name}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function intFlag(p: Parsed, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = stringFlag(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name}: "${v}" must be a whole number from ${min} to ${max}`);
  return n;
}

/** A flag that takes true or false (`--x=false`); absent: the fallback. */
export function boolFlag(p: Parsed, name: string, fallback: boolean): boolean {
  const v = stringFlag(p, name);
  if (v === undefined) return fallback;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new UsageError(`--${name}: "${v.slice(0, 32)}" must be true or false`);
}

export function listFlag(p: Parsed, name: string): string[] {
  const v = p.values[name];
  const items = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  return items.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}
