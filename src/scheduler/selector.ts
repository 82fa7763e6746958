import {
  type ClusterInput,
  clusterIdLabelKey,
  clusterNameLabelKey,
  type LabelSelector,
  type LabelSelectorRequirement,
  type NodeSelectorTerm,
} from './types.js';

// Kubernetes label-selector semantics over a cluster's labels.

type Labels = Readonly<Record<string, string>>;

/** A cluster's labels plus the built-ins, which win over labels of the same key. */
export function clusterLabels(cluster: ClusterInput): Labels {
  return {
    ...cluster.metadata.labels,
    [clusterIdLabelKey]: cluster.spec.clusterId,
    [clusterNameLabelKey]: cluster.metadata.name,
  };
}

const selectorOperators = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);
const termOperators = new Set([...selectorOperators, 'Gt', 'Lt']);
const integer = /^[+-]?\d+$/;

/** A problem with one requirement, naming its field, or undefined. */
export function requirementProblem(req: LabelSelectorRequirement, field: string, allowCompare: boolean): string | undefined {
  const allowed = allowCompare ? termOperators : selectorOperators;
  if (!allowed.has(req.operator)) {
    return `${field}.operator: "${String(req.operator).slice(0, 40)}" is not one of ${[...allowed].join(', ')}`;
  }
  const values = req.values ?? [];
  if ((req.operator === 'In' || req.operator === 'NotIn') && values.length === 0) {
    return `${field}.values: must not be empty for operator ${req.operator}`;
  }
  if ((req.operator === 'Exists' || req.operator === 'DoesNotExist') && values.length > 0) {
    return `${field}.values: must be empty for operator ${req.operator}`;
  }
  if (req.operator === 'Gt' || req.operator === 'Lt') {
    if (values.length !== 1 || !integer.test(values[0]!)) {
      return `${field}.values: operator ${req.operator} needs exactly one integer value`;
    }
  }
  return undefined;
}

export function selectorProblems(selector: LabelSelector, field: string): string[] {
  return (selector.matchExpressions ?? []).flatMap((req, i) => {
    const p = requirementProblem(req, `${field}.matchExpressions[${i}]`, false);
    return p ? [p] : [];
  });
}

export function termProblems(term: NodeSelectorTerm, field: string): string[] {
  const problems: string[] = [];
  (term.matchExpressions ?? []).forEach((req, i) => {
    const p = requirementProblem(req, `${field}.matchExpressions[${i}]`, true);
    if (p) problems.push(p);
  });
  (term.matchFields ?? []).forEach((req, i) => {
    const f = `${field}.matchFields[${i}]`;
    if (req.key !== 'metadata.name') problems.push(`${f}.key: only metadata.name is supported`);
    else if (req.operator !== 'In' && req.operator !== 'NotIn') problems.push(`${f}.operator: only In and NotIn are supported`);
    else if ((req.values ?? []).length === 0) problems.push(`${f}.values: must not be empty`);
  });
  return problems;
}

function requirementMatches(req: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = has ? labels[req.key]! : undefined;
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      return value === undefined || !values.includes(value);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      if (value === undefined || !integer.test(value)) return false;
      const v = BigInt(value);
      const bound = BigInt(values[0]!);
      return req.operator === 'Gt' ? v > bound : v < bound;
    }
    default:
      return false;
  }
}

/** Whether a valid label selector matches; an empty selector matches every cluster. */
export function selectorMatches(selector: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementMatches(req, labels));
}

/** Whether a valid node selector term matches; an empty term matches nothing, as in Kubernetes. */
export function termMatches(term: NodeSelectorTerm, labels: Labels, clusterName: string): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  return (
    exprs.every((req) => requirementMatches(req, labels)) &&
    fields.every((req) => requirementMatches({ ...req, key: 'metadata.name' }, { 'metadata.name': clusterName }))
  );
}
