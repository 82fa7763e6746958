import { link, mkdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../cache/index.js';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// The hub's data dir: checked before anything is written, and locked before
// anything in it changes, so a second hub on the same dir cannot rewrite the
// running hub's certificates on its way to failing.

const unwritableCodes = new Set(['EACCES', 'EPERM', 'EROFS']);

/** Creates the data dir (0700), or says in one sentence why it cannot be used. */
export async function prepareDataDir(dir: string): Promise<void> {
  const existing = await stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory()) {
    throw new HawserError(ErrorCode.DataDirNotDirectory, `data dir ${dir} is a file, not a directory; pass --data-dir a directory`);
  }
  try {
    await ensurePrivateDir(dir);
  } catch (err) {
    throw dataDirError(dir, err);
  }
}

/** Translates a file-system error inside the data dir into an operator's error. */
export function dataDirError(dir: string, err: unknown): HawserError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (unwritableCodes.has(code)) {
    return new HawserError(ErrorCode.DataDirUnwritable, `cannot write to data dir ${dir} (${code}); give the hub's user write access or pass another --data-dir`, {
      cause: err,
    });
  }
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    return new HawserError(ErrorCode.DataDirNotDirectory, `data dir ${dir} (or a parent of it) is a file, not a directory`, { cause: err });
  }
  if (err instanceof HawserError) return err;
  return new HawserError(ErrorCode.Internal, `data dir ${dir}: ${(err as Error).message}`, { cause: err });
}

// Data dirs locked by this process: its own pid in a lock file means stale
// only when it is not one of these.
const heldHere = new Set<string>();

export interface DataDirLock {
  readonly path: string;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dir>/hub.lock`, holding this pid. The lock appears whole (a temp
 * file hard-linked into place; link fails if the name exists), so a reader
 * never sees it empty. A lock whose pid is dead, or is this very pid (a
 * container's hub is pid 1 on every restart), is stale and taken over.
 * Two hubs racing over the same stale lock are still stopped by LevelDB's
 * own lock on the store.
 */
export async function lockDataDir(dir: string, pid = process.pid): Promise<DataDirLock> {
  const path = resolve(dir, 'hub.lock');
  if (heldHere.has(path)) throw new HawserError(ErrorCode.DataDirInUse, `data dir ${dir} in use by pid ${pid} (this process)`);
  const temp = join(dir, `.hub.lock.${pid}.tmp`);
  try {
    await writeFileAtomic(temp, `${pid}\n`, { mode: 0o644 });
    for (let attempt = 0; ; attempt++) {
      try {
        await link(temp, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      }
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== pid && alive(holder)) {
        throw new HawserError(
          ErrorCode.DataDirInUse,
          `data dir ${dir} in use by pid ${holder}; stop that hub, or delete ${path} if pid ${holder} is not a hawser hub`,
        );
      }
      await rm(path, { force: true });
    }
  } catch (err) {
    throw dataDirError(dir, err);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  heldHere.add(path);
  return {
    path,
    release: async () => {
      if (!heldHere.delete(path)) return;
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (holder === pid) await unlink(path).catch(() => undefined);
    },
  };
}

/** A private subdirectory of the data dir (pki/), with the data dir's errors. */
export async function privateSubdir(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  try {
    await mkdir(dir, { recursive: true });
    await ensurePrivateDir(path);
  } catch (err) {
    throw dataDirError(dir, err);
  }
  return path;
}
