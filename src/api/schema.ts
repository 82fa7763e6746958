import * as v from 'valibot';
import { dns1123LabelProblem, labelKeyProblem, labelProblems, labelValueProblem } from './meta.js';
import { quoteBounded } from './quote.js';

// The schema pieces every kind shares (metadata, label selectors, feeds,
// tolerations), in valibot, and the one formatter that turns its issues into
// "field.path: what is wrong (the value, quoted bounded)".

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A Kubernetes object name that is a DNS-1123 subdomain (Clusternet's kinds, most native ones). */
export const subdomainName = v.pipe(
  v.string(),
  v.check((s) => s.length > 0 && s.length <= 253 && dns1123Subdomain.test(s), 'must be a DNS-1123 subdomain of at most 253 characters (lower case alphanumerics, "-" and ".")'),
);

/** Any name a kube-apiserver keeps in a URL path segment (RBAC names may hold ":"); the object's own kind may be stricter. */
export const pathSegmentName = v.pipe(
  v.string(),
  v.check(
    (s) => s.length > 0 && s.length <= 253 && s !== '.' && s !== '..' && !/[/%]/.test(s),
    'must be 1-253 characters, not "." or "..", without "/" or "%"',
  ),
);

export const namespaceName = v.pipe(
  v.string(),
  v.check((s) => dns1123LabelProblem(s) === undefined, 'must be a DNS-1123 label: at most 63 lower case alphanumerics or "-", starting and ending with an alphanumeric'),
);

const stringMap = v.record(v.string(), v.string());

export const labels = v.pipe(
  stringMap,
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    for (const problem of labelProblems(dataset.value, 'labels')) addIssue({ message: problem.replace(/^labels: /, '') });
  }),
);

/** Kubernetes bounds annotations to 256 KiB in total, keys plus values. */
export const maxAnnotationsBytes = 256 * 1024;
export const annotations = v.pipe(
  stringMap,
  v.check((m) => {
    let bytes = 0;
    for (const [k, val] of Object.entries(m)) bytes += Buffer.byteLength(k) + Buffer.byteLength(val);
    return bytes <= maxAnnotationsBytes;
  }, `must be at most ${maxAnnotationsBytes} bytes in total`),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    for (const k of Object.keys(dataset.value)) {
      const problem = labelKeyProblem(k);
      if (problem) addIssue({ message: `key ${quoteBounded(k)}: ${problem}` });
    }
  }),
);

/**
 * ObjectMeta as one applies it. Server-owned fields (uid, resourceVersion,
 * creationTimestamp, generation, managedFields) are accepted and replaced by
 * the hub; other ObjectMeta fields pass through as they are.
 */
export function objectMeta(name: typeof subdomainName | typeof pathSegmentName) {
  return v.looseObject({
    name,
    namespace: v.optional(namespaceName),
    labels: v.optional(labels),
    annotations: v.optional(annotations),
    resourceVersion: v.optional(v.string()),
    generateName: v.optional(v.pipe(v.string(), v.check(() => false, 'is not supported: apply needs a name'))),
  });
}

const labelValue = v.pipe(
  v.string(),
  v.check((s) => labelValueProblem(s) === undefined, 'must be at most 63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric'),
);

export const labelSelectorOperators = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

const labelSelectorRequirement = v.pipe(
  v.strictObject({
    key: v.pipe(
      v.string(),
      v.check((s) => labelKeyProblem(s) === undefined, 'must be a label key: [prefix/]name, name 1-63 alphanumerics, "-", "_" or "."'),
    ),
    operator: v.picklist(labelSelectorOperators),
    values: v.optional(v.array(labelValue)),
  }),
  v.check(
    (r) => (r.operator === 'In' || r.operator === 'NotIn' ? (r.values?.length ?? 0) > 0 : (r.values?.length ?? 0) === 0),
    'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
  ),
);

/** metav1.LabelSelector. */
export const labelSelector = v.strictObject({
  matchLabels: v.optional(labels),
  matchExpressions: v.optional(v.array(labelSelectorRequirement)),
});

/** A reference to an object by apiVersion, kind, namespace and name (Clusternet's Feed). */
export const feed = v.strictObject({
  kind: v.pipe(v.string(), v.nonEmpty('must not be empty')),
  apiVersion: v.pipe(v.string(), v.nonEmpty('must not be empty')),
  namespace: v.optional(v.union([v.literal(''), namespaceName], 'must be a DNS-1123 label (a namespace name)')),
  name: v.pipe(v.string(), v.nonEmpty('must not be empty')),
});
export type Feed = v.InferOutput<typeof feed>;

/** corev1.Toleration. */
export const toleration = v.pipe(
  v.strictObject({
    key: v.optional(v.string()),
    operator: v.optional(v.picklist(['Exists', 'Equal'])),
    value: v.optional(v.string()),
    effect: v.optional(v.picklist(['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'])),
    tolerationSeconds: v.optional(v.pipe(v.number(), v.integer())),
  }),
  v.check((t) => t.operator !== 'Exists' || !t.value, 'value must be empty when operator is Exists'),
  v.check((t) => Boolean(t.key) || t.operator === 'Exists', 'operator must be Exists when key is empty'),
);
export type Toleration = v.InferOutput<typeof toleration>;

/** corev1.NodeSelectorRequirement (Clusternet's preferredClusters use node selector terms over cluster labels). */
const nodeSelectorRequirement = v.strictObject({
  key: v.string(),
  operator: v.picklist(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
  values: v.optional(v.array(v.string())),
});

/** corev1.PreferredSchedulingTerm. */
export const preferredSchedulingTerm = v.strictObject({
  weight: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100)),
  preference: v.strictObject({
    matchExpressions: v.optional(v.array(nodeSelectorRequirement)),
    matchFields: v.optional(v.array(nodeSelectorRequirement)),
  }),
});

/** corev1.TopologySpreadConstraint. */
export const topologySpreadConstraint = v.strictObject({
  maxSkew: v.pipe(v.number(), v.integer(), v.minValue(1)),
  topologyKey: v.pipe(v.string(), v.nonEmpty('must not be empty')),
  whenUnsatisfiable: v.picklist(['DoNotSchedule', 'ScheduleAnyway']),
  labelSelector: v.optional(labelSelector),
  minDomains: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  nodeAffinityPolicy: v.optional(v.picklist(['Honor', 'Ignore'])),
  nodeTaintsPolicy: v.optional(v.picklist(['Honor', 'Ignore'])),
  matchLabelKeys: v.optional(v.array(v.string())),
});

export const int32 = v.pipe(v.number(), v.integer(), v.minValue(-2147483648), v.maxValue(2147483647));
export const nonNegativeInt32 = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(2147483647));

/** Issues listed one by one at most; the rest are counted. */
const maxIssuesListed = 10;

/** `spec.feeds[2].kind` from a valibot issue path. */
export function issuePath(issue: v.BaseIssue<unknown>): string {
  let path = '';
  for (const item of issue.path ?? []) {
    const key = item.key;
    if (typeof key === 'number') path += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) path += path ? `.${key}` : key;
    else path += `[${quoteBounded(String(key), 64)}]`;
  }
  return path || '(document)';
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (typeof value === 'string') return quoteBounded(value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? `a list of ${value.length}` : 'an object';
}

/** One line per issue: the field, what is wrong, the value (quoted bounded). */
export function formatIssue(issue: v.BaseIssue<unknown>, prefix = ''): string {
  const path = issuePath(issue);
  const field = prefix ? (path === '(document)' ? prefix : `${prefix}.${path}`) : path;
  if (issue.type === 'strict_object' && issue.expected === 'never') return `${field}: unknown field`;
  if (issue.kind === 'schema' && issue.input === undefined) return `${field}: required`;
  // valibot's own messages start "Invalid type: …"; ours say what the value must be.
  if (issue.message.startsWith('Invalid ')) return `${field}: expected ${issue.expected ?? issue.type}, got ${describeValue(issue.input)}`;
  const primitive = issue.input === null || typeof issue.input !== 'object';
  return primitive ? `${field}: ${describeValue(issue.input)} ${issue.message}` : `${field}: ${issue.message}`;
}

/** The issues as lines, at most ten and a count of the rest. */
export function formatIssues(issues: ReadonlyArray<v.BaseIssue<unknown>>, prefix = ''): string[] {
  const lines = issues.slice(0, maxIssuesListed).map((i) => formatIssue(i, prefix));
  if (issues.length > maxIssuesListed) lines.push(`and ${issues.length - maxIssuesListed} more problems`);
  return lines;
}
