import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createCertificateAuthority, createServingCertificate } from '../tunnel/index.js';
import { TestkitError, TestkitErrorCode, errorMessage } from './errors.js';

// The kubelet endpoint of a child cluster's fake nodes: kwok's debugging
// server (logs, exec, attach, port-forward), serving HTTPS on 127.0.0.1 with a
// certificate the testkit makes. kube-apiserver verifies it with
// --kubelet-certificate-authority and reaches the nodes at their InternalIP
// (127.0.0.1) and daemonEndpoints.kubeletEndpoint.Port (kwok's port). kwok does
// not authenticate its clients, so kube-apiserver presents no client certificate.

/** What kwok's kubelet endpoint does for every pod of the cluster (cluster-wide kwok rules). */
export interface KubeletOptions {
  /**
   * `kubectl logs` of every container reads this file; `logs -f` follows it.
   * The file is in the CRI log format: write lines with criLogLine().
   */
  logsFile?: string;
  /** `kubectl attach` of every container follows this file (CRI log format). */
  attachFile?: string;
  /** `kubectl exec` runs the given command locally, in this directory, with these extra variables. */
  exec?: { workDir: string; env?: Readonly<Record<string, string>> };
  /**
   * `kubectl port-forward` to a pod port connects to host:port. podPorts
   * omitted: every pod port not named by another entry.
   */
  portForward?: ReadonlyArray<{ podPorts?: readonly number[]; host: string; port: number }>;
}

/** Files of the kubelet endpoint's TLS: a CA, and a serving certificate for IP 127.0.0.1 it signs. */
export interface KubeletTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * Makes a one-day CA and a serving certificate for IP 127.0.0.1 in `dir`
 * (keys 0600) with the hub's own certificate code, so no openssl binary is needed.
 */
export async function makeKubeletTls(dir: string): Promise<KubeletTls> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caFile = join(dir, 'kubelet-ca.crt');
  const keyFile = join(dir, 'kubelet.key');
  const certFile = join(dir, 'kubelet.crt');
  try {
    const ca = await createCertificateAuthority('hawser-testkit-kubelet-ca', 1);
    const serving = await createServingCertificate(ca, ['127.0.0.1'], 1);
    await writeFile(caFile, ca.certPem, { mode: 0o644 });
    await writeFile(certFile, serving.certPem, { mode: 0o644 });
    await writeFile(keyFile, serving.keyPem, { mode: 0o600 });
  } catch (err) {
    throw new TestkitError(TestkitErrorCode.KubeStart, `kubelet endpoint certificate: ${errorMessage(err)}`, { cause: err });
  }
  return { caFile, certFile, keyFile };
}

/** kube-apiserver flags: verify the kubelet endpoint's certificate, reach nodes at their InternalIP. */
export function apiserverKubeletArgs(tls: KubeletTls): string[] {
  return [`--kubelet-certificate-authority=${tls.caFile}`, '--kubelet-preferred-address-types=InternalIP'];
}

/**
 * kwok flags: serve the debugging handlers on 127.0.0.1:port with `tls`, and
 * have the node stages write InternalIP 127.0.0.1 and kubeletEndpoint.Port =
 * port into every fake node's status.
 */
export function kwokKubeletArgs(c: { port: number; tls: KubeletTls; configFile: string }): string[] {
  return [
    `--config=${c.configFile}`,
    `--server-address=127.0.0.1:${c.port}`,
    '--node-ip=127.0.0.1',
    `--node-port=${c.port}`,
    `--tls-cert-file=${c.tls.certFile}`,
    `--tls-private-key-file=${c.tls.keyFile}`,
  ];
}

/**
 * kwok's --config: a KwokConfiguration with the debugging handlers on, and one
 * cluster-wide ClusterLogs / ClusterAttach / ClusterExec / ClusterPortForward
 * (kwok.x-k8s.io/v1alpha1, no selector: every pod) per option given. No Stage
 * documents, so kwok keeps its built-in stages.
 */
export function kwokKubeletConfigYaml(options: KubeletOptions): string {
  const docs: Record<string, unknown>[] = [
    { apiVersion: 'config.kwok.x-k8s.io/v1alpha1', kind: 'KwokConfiguration', options: { enableDebuggingHandlers: true } },
  ];
  const rule = (kind: string, spec: Record<string, unknown>): void => {
    docs.push({ apiVersion: 'kwok.x-k8s.io/v1alpha1', kind, metadata: { name: 'hawser-testkit' }, spec });
  };
  if (options.logsFile !== undefined) rule('ClusterLogs', { logs: [{ logsFile: options.logsFile, follow: true }] });
  if (options.attachFile !== undefined) rule('ClusterAttach', { attaches: [{ logsFile: options.attachFile }] });
  if (options.exec !== undefined) {
    const envs = Object.entries(options.exec.env ?? {}).map(([name, value]) => ({ name, value }));
    rule('ClusterExec', { execs: [{ local: { workDir: options.exec.workDir, ...(envs.length ? { envs } : {}) } }] });
  }
  if (options.portForward !== undefined) {
    rule('ClusterPortForward', {
      forwards: options.portForward.map((f) => ({
        ...(f.podPorts?.length ? { ports: [...f.podPorts] } : {}),
        target: { address: f.host, port: f.port },
      })),
    });
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

/** Throws TESTKIT_INVALID_ARGUMENT naming the first bad field. */
export function validateKubeletOptions(options: KubeletOptions): void {
  const bad = (field: string, value: unknown): TestkitError =>
    new TestkitError(TestkitErrorCode.InvalidArgument, `startKubeCluster: kubelet.${field} is not valid: ${JSON.stringify(value)}`);
  const absolute = (p: string): boolean => p.startsWith('/');
  if (options.logsFile !== undefined && !absolute(options.logsFile)) throw bad('logsFile (an absolute path)', options.logsFile);
  if (options.attachFile !== undefined && !absolute(options.attachFile)) throw bad('attachFile (an absolute path)', options.attachFile);
  if (options.exec !== undefined && !absolute(options.exec.workDir)) throw bad('exec.workDir (an absolute path)', options.exec.workDir);
  const isPort = (p: number): boolean => Number.isInteger(p) && p >= 1 && p <= 65535;
  for (const [i, f] of (options.portForward ?? []).entries()) {
    if (!isPort(f.port)) throw bad(`portForward[${i}].port`, f.port);
    if (f.host.length === 0) throw bad(`portForward[${i}].host`, f.host);
    for (const p of f.podPorts ?? []) if (!isPort(p)) throw bad(`portForward[${i}].podPorts`, p);
  }
}

/**
 * One line of a CRI container log (what kwok, like the kubelet, reads):
 * "<RFC3339Nano time> <stream> F <text>". `text` must not hold a newline.
 */
export function criLogLine(text: string, stream: 'stdout' | 'stderr' = 'stdout', time: Date = new Date()): string {
  if (text.includes('\n')) throw new TestkitError(TestkitErrorCode.InvalidArgument, `criLogLine: text holds a newline: ${JSON.stringify(text.slice(0, 80))}`);
  return `${time.toISOString()} ${stream} F ${text}\n`;
}
