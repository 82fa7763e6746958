// Kubernetes-style object metadata and the checks Kubernetes applies to names
// and labels, so what the hub accepts a kube-apiserver would accept too.

import { quoteBounded } from './quote.js';

/**
 * Labels an object may carry. Kubernetes bounds each label but not their number;
 * it bounds annotations to 256 KiB in total (keys plus values), and we bound
 * labels the same way, plus 1,000 labels at most: far more than selectors
 * need, and high enough that the byte bound still matters (1,000 labels of the
 * largest valid size would be about 370 KiB).
 */
export const maxLabels = 1_000;
export const maxLabelsBytes = 256 * 1024;
/** The hub's default bound on one object's size (as JSON), like etcd's 1.5 MiB request limit. */
export const defaultMaxObjectBytes = 1.5 * 1024 * 1024;
/** Problems listed one by one at most; the rest are counted. */
const maxProblemsListed = 10;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  resourceVersion?: string;
  /** Bumped by the hub when what an apply sets (all but metadata and status) changes. */
  generation?: number;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Returns a reason the value is not a DNS-1123 label, or undefined. */
export function dns1123LabelProblem(value: string, maxLength = 63): string | undefined {
  if (value.length === 0) return 'must not be empty';
  if (value.length > maxLength) return `must be at most ${maxLength} characters (is ${value.length})`;
  if (!dns1123Label.test(value)) {
    return 'must consist of lower case alphanumeric characters or "-", and start and end with an alphanumeric character';
  }
  return undefined;
}

export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined) {
    if (prefix.length === 0 || prefix.length > 253 || !dns1123Subdomain.test(prefix)) {
      return `prefix ${quoteBounded(prefix)} must be a DNS-1123 subdomain of at most 253 characters`;
    }
  }
  if (name.length === 0 || name.length > 63 || !labelName.test(name)) {
    return `name part ${quoteBounded(name)} must be 1-63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric`;
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value.length === 0) return undefined;
  if (value.length > 63 || !labelName.test(value)) {
    return 'must be at most 63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric';
  }
  return undefined;
}

/** Problems with a label map, one line each, naming the offending key (quoted bounded). */
export function labelProblems(labels: Record<string, string>, field: string): string[] {
  const entries = Object.entries(labels);
  if (entries.length > maxLabels) return [`${field}: ${entries.length} labels exceed the limit of ${maxLabels}`];
  let bytes = 0;
  for (const [k, v] of entries) bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  if (bytes > maxLabelsBytes) return [`${field}: labels of ${bytes} bytes in total exceed the limit of ${maxLabelsBytes} bytes`];
  const problems: string[] = [];
  for (const [k, v] of entries) {
    const kp = labelKeyProblem(k);
    if (kp) problems.push(`${field}: key ${quoteBounded(k)}: ${kp}`);
    const vp = labelValueProblem(v);
    if (vp) problems.push(`${field}: value ${quoteBounded(v)} of ${quoteBounded(k)}: ${vp}`);
  }
  if (problems.length <= maxProblemsListed) return problems;
  return [...problems.slice(0, maxProblemsListed), `${field}: and ${problems.length - maxProblemsListed} more problems`];
}

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

/** Parses "a=b,c=d" as the --cluster-labels flag takes it. */
export function parseLabelSelectorString(text: string, field: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text.trim() === '') return labels;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new RangeError(`${field}: ${quoteBounded(part)} is not key=value`);
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const problems = labelProblems(labels, field);
  if (problems.length > 0) throw new RangeError(problems.join('; '));
  return labels;
}

export function setCondition(conditions: Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition[] {
  const existing = conditions.find((c) => c.type === next.type);
  const lastTransitionTime =
    existing && existing.status === next.status ? existing.lastTransitionTime : now.toISOString();
  return [...conditions.filter((c) => c.type !== next.type), { ...next, lastTransitionTime }];
}
