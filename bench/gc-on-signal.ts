// Preloaded by bench/agents.ts and bench/agent-memory.ts into the processes
// they measure, together with --expose-gc: SIGUSR2 runs full garbage
// collections, so RSS can be read at a settled moment. With
// HAWSER_BENCH_MEMORY_FILE set, process.memoryUsage() after them is written
// there (the heap's share of RSS). With HAWSER_BENCH_HEAP_SNAPSHOT_DIR set,
// SIGWINCH (ignored by node otherwise) writes a heap snapshot there,
// heap-<pid>-<n>.heapsnapshot: a signal of its own, so the RSS readings are
// not disturbed by it. Nothing else changes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const file = process.env.HAWSER_BENCH_MEMORY_FILE;
  if (file) writeFileSync(file, JSON.stringify(process.memoryUsage()));
});

const snapshotDir = process.env.HAWSER_BENCH_HEAP_SNAPSHOT_DIR;
let snapshots = 0;
if (snapshotDir) process.on('SIGWINCH', () => writeHeapSnapshot(join(snapshotDir, `heap-${process.pid}-${++snapshots}.heapsnapshot`)));
