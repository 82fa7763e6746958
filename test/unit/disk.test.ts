import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mountSmallDisk } from '../../src/testkit/index.js';

describe('mountSmallDisk', () => {
  it('is a real filesystem that answers ENOSPC when full, and room again after unfill', async () => {
    const disk = await mountSmallDisk(1024 * 1024);
    try {
      await disk.fill();
      expect(await disk.freeBytes()).toBeLessThan(8192);
      await expect(writeFile(join(disk.path, 'x'), Buffer.alloc(64 * 1024))).rejects.toMatchObject({ code: 'ENOSPC' });
      await disk.unfill();
      await writeFile(join(disk.path, 'x'), Buffer.alloc(64 * 1024));
    } finally {
      await disk.close();
    }
  });
});
