import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TestkitError, TestkitErrorCode } from './errors.js';

/** Binaries built by scripts/build-testbed.sh. */
export type TestbedBinary =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubectl'
  | 'kwok'
  | 'toxiproxy-server'
  | 'toxiproxy-cli';

/** `$HAWSER_TESTBED_DIR/bin`, default `~/.cache/hawser/testbed/bin`. */
export function testbedBinDir(): string {
  const root = process.env['HAWSER_TESTBED_DIR'] || join(homedir(), '.cache', 'hawser', 'testbed');
  return join(root, 'bin');
}

/** True when the named testbed binary exists and is executable. */
export function hasTestbedBinary(name: TestbedBinary | string): boolean {
  try {
    accessSync(join(testbedBinDir(), name), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Absolute path of a testbed binary. Throws TESTKIT_TESTBED_MISSING, saying
 * how to build it, when it is not there.
 */
export function requireTestbedBinary(name: TestbedBinary | string): string {
  const path = join(testbedBinDir(), name);
  try {
    accessSync(path, constants.X_OK);
  } catch (err) {
    throw new TestkitError(
      TestkitErrorCode.TestbedMissing,
      `testbed binary "${name}" not found or not executable at ${path}; ` +
        `run scripts/build-testbed.sh (set HAWSER_TESTBED_DIR to use another testbed directory)`,
      { cause: err },
    );
  }
  return path;
}
