// Preloaded by bench/agents.ts and bench/agent-memory.ts into the processes
// they measure, together with --expose-gc: SIGUSR2 runs full garbage
// collections, so RSS can be read at a settled moment. With
// HAWSER_BENCH_MEMORY_FILE set, process.memoryUsage() after them is written
// there (the heap's share of RSS). Nothing else changes.
import { writeFileSync } from 'node:fs';

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const file = process.env.HAWSER_BENCH_MEMORY_FILE;
  if (file) writeFileSync(file, JSON.stringify(process.memoryUsage()));
});
