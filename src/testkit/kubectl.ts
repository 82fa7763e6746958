import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { TestkitError, TestkitErrorCode } from './errors.js';
import { requireTestbedBinary } from './testbed.js';

export interface KubectlOptions {
  /** Written to kubectl's stdin, e.g. a manifest for `apply -f -`. */
  input?: string;
  /** Killed (SIGKILL) after this long. Default 60 s. */
  timeoutMs?: number;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs the testbed's kubectl (built with kube-apiserver, never the one on
 * PATH) with the cluster's kubeconfig and a cache dir inside the cluster's
 * working directory. Rejects with TESTKIT_KUBECTL, carrying stderr, when it
 * exits non-zero or runs past its deadline.
 */
export function kubectl(
  cluster: { kubeconfigPath: string; workDir: string },
  args: readonly string[],
  options: KubectlOptions = {},
): Promise<KubectlResult> {
  const bin = requireTestbedBinary('kubectl');
  const argv = ['--kubeconfig', cluster.kubeconfigPath, '--cache-dir', join(cluster.workDir, 'kubectl-cache'), ...args];
  const timeoutMs = options.timeoutMs ?? 60_000;
  const what = `kubectl ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new TestkitError(TestkitErrorCode.Kubectl, `${what}: could not run ${bin}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return resolve({ stdout, stderr });
      const how = timedOut ? `ran past ${timeoutMs} ms` : signal ? `was killed by ${signal}` : `exited with code ${String(code)}`;
      reject(new TestkitError(TestkitErrorCode.Kubectl, `${what} ${how}\n${stderr.slice(-2_000)}`));
    });
    // kubectl may exit before reading all of stdin (e.g. a bad flag); that is its answer, not ours.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  });
}
