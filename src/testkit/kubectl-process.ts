import { join } from 'node:path';
import { ManagedProcess } from './process.js';
import { requireTestbedBinary } from './testbed.js';
import type { Tracker } from './tracker.js';

export interface StartKubectlOptions {
  /** Names the log file (`<workDir>/logs/<name>.log`) and messages. Default "kubectl-<first arg>". */
  name?: string;
  /** stop(): time between SIGTERM and SIGKILL. Default 5 s. */
  stopGraceMs?: number;
  tracker?: Tracker;
}

/**
 * A long-running testbed kubectl (`logs -f`, `port-forward`, `attach`) as a
 * ManagedProcess: wait for its output with waitFor(/regex/) or lines(), and
 * stop() it. Same kubeconfig and cache dir as kubectl(); the tracker reports
 * one that is left running.
 */
export function startKubectl(
  cluster: { kubeconfigPath: string; workDir: string },
  args: readonly string[],
  options: StartKubectlOptions = {},
): Promise<ManagedProcess> {
  return ManagedProcess.start({
    name: options.name ?? `kubectl-${args[0] ?? 'run'}`,
    command: requireTestbedBinary('kubectl'),
    args: ['--kubeconfig', cluster.kubeconfigPath, '--cache-dir', join(cluster.workDir, 'kubectl-cache'), ...args],
    logDir: join(cluster.workDir, 'logs'),
    stopGraceMs: options.stopGraceMs ?? 5_000,
    ...(options.tracker ? { tracker: options.tracker } : {}),
  });
}
