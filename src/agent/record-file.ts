import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../cache/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// A record the agent must not lose or trust half-written (its identity, the
// hub's trust bundle): one JSON file, `{ version: 1, <field>: record, sha256 }`,
// with the checksum over the record's canonical JSON (top-level keys sorted),
// written atomically and 0600, in its own file beside the LevelDB cache.

export type RecordRead<T> = { kind: 'ok'; record: T } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

function digest(record: object): string {
  return createHash('sha256').update(JSON.stringify(record, Object.keys(record).sort())).digest('hex');
}

/** The file's text for `record` under `field`; write it with writeRecordFile. */
export function recordFileText(field: string, record: object): string {
  return `${JSON.stringify({ version: 1, [field]: record, sha256: digest(record) }, null, 2)}\n`;
}

/** Durable when it resolves; a failed write (a full disk) is HAWSER_CACHE_WRITE_FAILED naming `what`. */
export async function writeRecordFile(path: string, text: string, what: string): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode: 0o600 });
  } catch (err) {
    throw new HawserError(ErrorCode.CacheWriteFailed, `cannot write ${what} to ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads and checks the file; `wellFormed` vets the record's shape before its checksum is trusted. Never throws. */
export async function readRecordFile<T extends object>(path: string, field: string, wellFormed: (record: Partial<T> | undefined) => boolean): Promise<RecordRead<T>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'damaged', reason: `cannot read: ${(err as Error).message}` };
  }
  let file: { version?: unknown; sha256?: unknown } & Record<string, unknown>;
  try {
    file = JSON.parse(text) as typeof file;
  } catch {
    return { kind: 'damaged', reason: 'not JSON' };
  }
  const record = file?.[field] as Partial<T> | undefined;
  if (file?.version !== 1 || typeof record !== 'object' || record === null || !wellFormed(record)) return { kind: 'damaged', reason: 'missing fields' };
  if (digest(record) !== file.sha256) return { kind: 'damaged', reason: 'checksum mismatch' };
  return { kind: 'ok', record: record as T };
}
