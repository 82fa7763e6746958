import { dns1123LabelProblem, parseLabelSelectorString } from '../api/index.js';
import { UsageError } from './flags.js';

/** One edge cluster of the demo: its name and the labels its agent registers with. */
export interface DemoClusterSpec {
  name: string;
  labels: Record<string, string>;
}

export const maxDemoClusters = 5;

/**
 * `--cluster NAME[:k=v,k=v]`, repeatable, so the examples' label selectors can
 * be tried; without it, `--clusters N` clusters edge-1..N labelled site and tier.
 */
export function demoClusterSpecs(specs: readonly string[], count: number): DemoClusterSpec[] {
  if (specs.length === 0) {
    return Array.from({ length: count }, (_, i) => ({ name: `edge-${i + 1}`, labels: { site: `edge-${i + 1}`, tier: 'edge' } }));
  }
  if (specs.length > maxDemoClusters) throw new UsageError(`--cluster: at most ${maxDemoClusters} clusters, got ${specs.length}`);
  const seen = new Set<string>();
  return specs.map((spec) => {
    const colon = spec.indexOf(':');
    const name = colon < 0 ? spec : spec.slice(0, colon);
    const nameProblem = dns1123LabelProblem(name);
    if (nameProblem) throw new UsageError(`--cluster "${spec.slice(0, 80)}": cluster name ${nameProblem}`);
    if (seen.has(name)) throw new UsageError(`--cluster: "${name}" is given twice`);
    seen.add(name);
    let labels: Record<string, string>;
    try {
      labels = colon < 0 ? {} : parseLabelSelectorString(spec.slice(colon + 1), `--cluster ${name}`);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    return { name, labels };
  });
}

/** What `<data-dir>/clusters.json` holds for each cluster: enough to fill in the examples' ids and namespaces. */
export interface DemoClusterRecord {
  name: string;
  id: string;
  labels: Record<string, string>;
  dedicatedNamespace: string;
  kubeconfig: string;
}
