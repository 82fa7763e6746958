// The testkit: real processes for integration tests (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok, toxiproxy, and anything
// else), the testbed's kubectl, deadline-bound waits, and a tracker that
// proves a test left no process or port behind. This file is its only door.
export { TestkitError, TestkitErrorCode } from './errors.js';
export { testbedBinDir, requireTestbedBinary, hasTestbedBinary, type TestbedBinary } from './testbed.js';
export { waitUntil, type WaitOptions } from './wait.js';
export { freePort, type FreePortOptions } from './ports.js';
export {
  Tracker,
  LeakError,
  defaultTracker,
  assertNoLeaks,
  closeAll,
  isPidAlive,
  isPortOpen,
  type Leak,
  type TrackedProcess,
} from './tracker.js';
export {
  ManagedProcess,
  startProcess,
  type ManagedProcessOptions,
  type ExitInfo,
  type ProcessCondition,
  type ProcessWaitOptions,
} from './process.js';
export { mountSmallDisk, type SmallDisk } from './disk.js';
export { httpsRequest, type HttpsRequestOptions, type HttpsResponse } from './http.js';
export { startKubeCluster, kubeconfigYaml, type KubeCluster, type StartKubeClusterOptions } from './kube.js';
export { DEFAULT_FAKE_NODES, FAKE_NODE_ANNOTATION, type FakeNodeSpec, type WorkloadComponents } from './workloads.js';
export { criLogLine, kwokKubeletConfigYaml, makeKubeletTls, validateKubeletOptions, type KubeletOptions, type KubeletTls } from './kwok-kubelet.js';
export { kubectl, type KubectlOptions, type KubectlResult } from './kubectl.js';
export { startKubectl, type StartKubectlOptions } from './kubectl-process.js';
export {
  startToxiproxy,
  ToxiproxyApiError,
  type Toxiproxy,
  type ToxiproxyProxy,
  type ToxicSpec,
  type Toxic,
  type ToxicStream,
  type ProxyState,
  type StartToxiproxyOptions,
} from './toxiproxy.js';
export { startTcpRelay, type TcpRelay, type RelayConnection } from './relay.js';
export { seeded } from './random.js';
