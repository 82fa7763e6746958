import { execFile } from 'node:child_process';
import { mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestkitError, TestkitErrorCode } from './errors.js';

// A real, small filesystem (tmpfs) for tests of what happens when the disk
// fills up: ENOSPC from the kernel, not a fake. Needs root (CI and the
// development machines run as root).

const run = promisify(execFile);

export interface SmallDisk {
  /** Mount point; put the directory under test inside it. */
  readonly path: string;
  /** Free bytes as the kernel reports them. */
  freeBytes(): Promise<number>;
  /** Fills the disk so that about `leaveBytes` stay free (0: completely full). */
  fill(leaveBytes?: number): Promise<void>;
  /** Frees what fill() took. */
  unfill(): Promise<void>;
  /** Unmounts and removes the mount point. */
  close(): Promise<void>;
}

export async function mountSmallDisk(sizeBytes = 4 * 1024 * 1024): Promise<SmallDisk> {
  const path = await mkdtemp(join(tmpdir(), 'hawser-disk-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', path]);
  } catch (cause) {
    await rm(path, { recursive: true, force: true });
    throw new TestkitError(TestkitErrorCode.InvalidArgument, `cannot mount a ${sizeBytes}-byte tmpfs at ${path} (needs root): ${(cause as Error).message}`, { cause });
  }
  const filler = join(path, '.filler');
  const freeBytes = async () => {
    const s = await statfs(path);
    return s.bavail * s.bsize;
  };
  return {
    path,
    freeBytes,
    async fill(leaveBytes = 0) {
      const free = await freeBytes();
      const take = Math.max(0, free - leaveBytes);
      try {
        await writeFile(filler, Buffer.alloc(take), { flag: 'a' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    },
    async unfill() {
      await rm(filler, { force: true });
    },
    async close() {
      await run('umount', ['-l', path]).catch(() => undefined);
      await rm(path, { recursive: true, force: true });
    },
  };
}
