import { defineConfig } from 'vitest/config';

// Integration tests start real processes (etcd, kube-apiserver, toxiproxy,
// hub, agents) on a 2-core machine: files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    reporters: ['default'],
  },
});
