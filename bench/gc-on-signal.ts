// Preloaded by bench/agents.ts into the processes it measures (the hub and the
// bare gRPC server), together with --expose-gc: SIGUSR2 runs full garbage
// collections, so RSS can be read at a settled moment. Nothing else changes.
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
});
