import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  appsApiVersion,
  type Globalization,
  type Localization,
  lookupKind,
  maxFeeds,
  parseDocuments,
  resolveResourceName,
  type Subscription,
  type Validation,
  validateObject,
  type ValidObject,
} from '../../src/api/index.js';

const examplesDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/examples/clusternet');

function ok(result: Validation): ValidObject {
  if (!result.ok) throw new Error(`expected valid, got ${result.code}: ${result.message}`);
  return result.value;
}

function refused(result: Validation): { code: string; message: string } {
  expect(result.ok).toBe(false);
  return result as { code: string; message: string };
}

function yamlDocs(text: string): unknown[] {
  const r = parseDocuments(text);
  if (!r.ok) throw new Error(r.message);
  return r.documents.map((d) => d.doc);
}

const subscription = (spec: Record<string, unknown>, apiVersion = 'apps.clusternet.io/v1alpha1') => ({
  apiVersion,
  kind: 'Subscription',
  metadata: { name: 'app-demo', namespace: 'default' },
  spec: {
    subscribers: [{ clusterAffinity: { matchLabels: { env: 'prod' } } }],
    feeds: [{ apiVersion: 'v1', kind: 'Namespace', name: 'foo' }],
    ...spec,
  },
});

const localization = (spec: Record<string, unknown>) => ({
  apiVersion: 'apps.clusternet.io/v1alpha1',
  kind: 'Localization',
  metadata: { name: 'loc', namespace: 'clusternet-abcde' },
  spec: { feed: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'nginx', namespace: 'default' }, ...spec },
});

describe('the shared Clusternet examples', () => {
  const files = readdirSync(examplesDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.yaml'));

  it('finds the example files', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });

  it('validates every document as it is', () => {
    for (const file of files) {
      const docs = yamlDocs(readFileSync(join(examplesDir, file), 'utf8'));
      expect(docs.length, file).toBeGreaterThan(0);
      for (const doc of docs) ok(validateObject(doc));
    }
  });
});

describe("Clusternet's own examples/", () => {
  // Trimmed from clusternet/clusternet examples/: what those files use must apply.
  const cases: Record<string, string> = {
    'mcs-api subscription with a CRD feed': `
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata:
  name: scheduling-with-mcs-api
  namespace: default
spec:
  subscribers:
    - clusterAffinity:
        matchLabels:
          clusters.clusternet.io/cluster-id: dc91021d-2361-4f6d-a404-7c33b9e01118
      weight: 1
  schedulingStrategy: Dividing
  dividingScheduling:
    type: Static
  feeds:
    - apiVersion:  multicluster.x-k8s.io/v1alpha1
      kind: ServiceExport
      name: nginx-svc
      namespace: baz
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: nginx-svc
  namespace: baz
  labels:
    apps.clusternet.io/subs.namespace: default`,
    'field patch globalization (namespaced in the file, cluster-scoped kind)': `
apiVersion: apps.clusternet.io/v1alpha1
kind: Globalization
metadata:
  name: server-conf-overrides-demo
  namespace: qux
spec:
  priority: 600
  feed:
    apiVersion: v1
    kind: ConfigMap
    name: server-conf
    namespace: qux
  clusterAffinity:
    matchExpressions:
      - key: clusters.clusternet.io/cluster-name
        operator: In
        values:
        - us-west
  overrides:
    - name: update-zoneid-regionid
      type: FieldMergePatch
      fieldPath: /data/server.conf
      fieldFormat: JSON
      value: |-
        {
            "db_address": "local:3306",
            "region_id": "us-west-1"
        }`,
    'helm chart and Helm overrides (stored, unsupported)': `
apiVersion: apps.clusternet.io/v1alpha1
kind: HelmChart
metadata:
  name: mysql
  namespace: default
spec:
  repo: oci://myoci.registry.com:5000/helm-charts
  chart: mysql
  version: 9.2.0
  targetNamespace: abc
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata:
  name: mysql-local-overrides-demo
  namespace: clusternet-5l82l
spec:
  priority: 500
  feed:
    apiVersion: apps.clusternet.io/v1alpha1
    kind: HelmChart
    name: mysql
    namespace: default
  overrides:
    - name: update-image
      type: Helm
      value: '{"auth":{"database":"database_for_clusternet-5l82l"}}'
    - name: update-helm-chart-version
      type: Helm
      overrideChart: true
      value: |-
        spec:
          version: 9.1.8
    - name: inject-new-container
      type: JSONPatch
      value: |-
        - op: add
          path: "/spec/template/spec/containers/1"
          value:
            name: "redis-container"`,
    'subgroups and dynamic dividing': `
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata:
  name: dynamic-dividing-scheduling-demo
  namespace: default
spec:
  schedulingBySubGroup: true
  subscribers:
    - clusterAffinity:
        matchLabels:
          region: ap-shanghai
      subGroupStrategy:
        minClusters: 1
  schedulingStrategy: Dividing
  dividingScheduling:
    type: Dynamic
    dynamicDividing:
      strategy: Spread
  feeds:
    - apiVersion: nfd.k8s-sigs.io/v1alpha1
      kind: NodeFeatureRule
      name: label-aggregate-rule`,
  };
  for (const [name, text] of Object.entries(cases)) {
    it(`accepts ${name}`, () => {
      const docs = yamlDocs(text);
      expect(docs.length).toBeGreaterThan(0);
      for (const doc of docs) ok(validateObject(doc));
    });
  }
});

describe('defaults and aliases', () => {
  it("stores Clusternet's group as hawser's, with Clusternet's defaults", () => {
    const v = ok(validateObject(subscription({})));
    const sub = v.object as unknown as Subscription;
    expect(v.resourceKind).toBe('Subscription');
    expect(sub.apiVersion).toBe(appsApiVersion);
    expect(sub.spec.schedulingStrategy).toBe('Replication');
    expect(sub.spec.schedulerName).toBe('default');
    expect(sub.spec.preemptionPolicy).toBe('PreemptLowerPriority');
    // Clusternet gives a Subscription no default priority; its scheduler reads none as 0.
    expect(sub.spec.priority).toBeUndefined();
    expect(sub.spec.dividingScheduling).toBeUndefined();
  });

  it('divides statically, and spreads dynamically, by default', () => {
    const statically = ok(validateObject(subscription({ schedulingStrategy: 'Dividing' }))).object as unknown as Subscription;
    expect(statically.spec.dividingScheduling).toEqual({ type: 'Static' });
    const dynamic = ok(validateObject(subscription({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Dynamic', dynamicDividing: {} } })))
      .object as unknown as Subscription;
    expect(dynamic.spec.dividingScheduling?.dynamicDividing?.strategy).toBe('Spread');
  });

  it('gives overrides priority 500 and ApplyLater unless they say otherwise', () => {
    const loc = ok(validateObject(localization({}))).object as unknown as Localization;
    expect(loc.spec.priority).toBe(500);
    expect(loc.spec.overridePolicy).toBe('ApplyLater');
    const zero = ok(validateObject(localization({ priority: 0, overridePolicy: 'ApplyNow' }))).object as unknown as Localization;
    expect(zero.spec.priority).toBe(0);
    expect(zero.spec.overridePolicy).toBe('ApplyNow');
  });

  it('drops the namespace of a cluster-scoped kind and defaults that of a namespaced one', () => {
    const glob = ok(validateObject({ apiVersion: 'apps.hawser.io/v1alpha1', kind: 'Globalization', metadata: { name: 'g', namespace: 'qux' }, spec: {} }));
    expect((glob.object as unknown as Globalization).metadata.namespace).toBeUndefined();
    const ns = ok(validateObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'foo', namespace: 'bar' } }));
    expect(ns.object.metadata.namespace).toBeUndefined();
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } };
    expect(ok(validateObject(cm)).object.metadata.namespace).toBe('default');
    expect(ok(validateObject(cm, { defaultNamespace: 'edge' })).object.metadata.namespace).toBe('edge');
    // As kubectl: -n edge and a document in another namespace is refused; a cluster-scoped kind ignores -n.
    const elsewhere = refused(validateObject({ ...cm, metadata: { name: 'c', namespace: 'other' } }, { defaultNamespace: 'edge' }));
    expect(elsewhere.code).toBe('HAWSER_INVALID_OBJECT');
    expect(elsewhere.message).toContain('metadata.namespace "other" does not match');
    ok(validateObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'foo', namespace: 'other' } }, { defaultNamespace: 'edge' }));
    // A kind the hub does not know keeps what it says.
    expect(ok(validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).object.metadata.namespace).toBeUndefined();
  });

  it('keeps native objects as they are, as feeds, and takes resourceVersion as a precondition', () => {
    const v = ok(validateObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'foo', resourceVersion: '42', uid: 'x' }, spec: { replicas: 2 } }));
    expect(v.resourceKind).toBe('Feed');
    expect(v.expectResourceVersion).toBe('42');
    expect(v.object).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'foo' }, spec: { replicas: 2 } });
  });

  it('drops status on apply (the hub writes it)', () => {
    const v = ok(validateObject({ ...subscription({}), status: { bindingClusters: ['x'] } }));
    expect(v.object.status).toBeUndefined();
  });

  it('reads Description raw objects written as objects or as base64 JSON', () => {
    const obj = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'default' } };
    const b64 = Buffer.from(JSON.stringify(obj)).toString('base64');
    const v = ok(validateObject({ apiVersion: 'apps.hawser.io/v1alpha1', kind: 'Description', metadata: { name: 'd', namespace: 'default' }, spec: { deployer: 'Generic', raw: [obj, b64] } }));
    expect((v.object.spec as { raw: unknown[] }).raw).toEqual([obj, obj]);
  });
});

describe('known kinds', () => {
  it('refuses a feed kind its group does not have, naming both', () => {
    const r = refused(validateObject(subscription({ feeds: [{ apiVersion: 'v1', kind: 'Namespace', name: 'foo' }, { apiVersion: 'apps/v1', kind: 'Service', name: 's', namespace: 'foo' }] })));
    expect(r.code).toBe('HAWSER_UNKNOWN_KIND');
    expect(r.message).toContain('apps/v1 has no kind Service');
    expect(r.message).toContain('spec.feeds[1]');
  });

  it('refuses such kinds as applied objects, in overrides, Descriptions and Manifests', () => {
    expect(refused(validateObject({ apiVersion: 'apps/v1', kind: 'Service', metadata: { name: 's' } })).code).toBe('HAWSER_UNKNOWN_KIND');
    expect(refused(validateObject({ apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Subscriptoin', metadata: { name: 's' } })).code).toBe('HAWSER_UNKNOWN_KIND');
    expect(refused(validateObject(localization({ feed: { apiVersion: 'batch/v1', kind: 'Deployment', name: 'x' } }))).code).toBe('HAWSER_UNKNOWN_KIND');
    const desc = { apiVersion: 'apps.hawser.io/v1alpha1', kind: 'Description', metadata: { name: 'd' }, spec: { deployer: 'Generic', raw: [{ apiVersion: 'v1', kind: 'Deployment', metadata: { name: 'x' } }] } };
    expect(refused(validateObject(desc)).message).toContain('spec.raw[0]: v1 has no kind Deployment');
  });

  it('refuses a version its known group does not serve', () => {
    const r = refused(validateObject({ apiVersion: 'extensions/v1beta1', kind: 'Deployment', metadata: { name: 'd' } }));
    expect(r.code).toBe('HAWSER_UNKNOWN_API_VERSION');
    expect(refused(validateObject(subscription({ feeds: [{ apiVersion: 'apps/v1beta2', kind: 'Deployment', name: 'd' }] }))).code).toBe('HAWSER_UNKNOWN_API_VERSION');
  });

  it("accepts any kind of a group it does not know (a CRD's)", () => {
    expect(lookupKind('multicluster.x-k8s.io/v1alpha1', 'ServiceExport')).toEqual({ known: false });
    ok(validateObject(subscription({ feeds: [{ apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceExport', name: 'x', namespace: 'baz' }] })));
  });

  it('knows the built-in groups of Kubernetes v1.33 and the Clusternet groups', () => {
    const known: Array<[string, string]> = [
      ['v1', 'Service'], ['v1', 'Secret'], ['apps/v1', 'StatefulSet'], ['batch/v1', 'CronJob'], ['networking.k8s.io/v1', 'Ingress'],
      ['rbac.authorization.k8s.io/v1', 'ClusterRole'], ['policy/v1', 'PodDisruptionBudget'], ['autoscaling/v2', 'HorizontalPodAutoscaler'],
      ['storage.k8s.io/v1', 'StorageClass'], ['apiextensions.k8s.io/v1', 'CustomResourceDefinition'], ['coordination.k8s.io/v1', 'Lease'],
      ['discovery.k8s.io/v1', 'EndpointSlice'], ['scheduling.k8s.io/v1', 'PriorityClass'], ['node.k8s.io/v1', 'RuntimeClass'],
      ['certificates.k8s.io/v1', 'CertificateSigningRequest'], ['admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration'],
      ['apps.clusternet.io/v1alpha1', 'HelmChart'], ['clusters.clusternet.io/v1beta1', 'ManagedCluster'],
    ];
    for (const [apiVersion, kind] of known) expect(lookupKind(apiVersion, kind), `${apiVersion} ${kind}`).toMatchObject({ known: true });
  });
});

describe('bounds', () => {
  const feeds = (n: number) => Array.from({ length: n }, (_, i) => ({ apiVersion: 'v1', kind: 'ConfigMap', name: `c${i}`, namespace: 'default' }));

  it(`refuses a Subscription naming more than ${maxFeeds} feeds, with the bound in the message`, () => {
    const r = refused(validateObject(subscription({ feeds: feeds(10_000) })));
    expect(r.code).toBe('HAWSER_TOO_MANY_FEEDS');
    expect(r.message).toContain('10000');
    expect(r.message).toContain(String(maxFeeds));
    ok(validateObject(subscription({ feeds: feeds(maxFeeds) })));
  });

  it("refuses an object over the hub's object limit", () => {
    const big = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big', namespace: 'default' }, data: { blob: 'x'.repeat(2 * 1024 * 1024) } };
    const r = refused(validateObject(big));
    expect(r.code).toBe('HAWSER_OBJECT_TOO_LARGE');
    expect(r.message).toContain('ConfigMap default/big');
    expect(refused(validateObject({ ...big, data: { blob: 'x'.repeat(2000) } }, { maxObjectBytes: 1000 })).code).toBe('HAWSER_OBJECT_TOO_LARGE');
    ok(validateObject({ ...big, data: { blob: 'x'.repeat(2000) } }, { maxObjectBytes: 4000 }));
  });
});

describe('invalid objects', () => {
  function invalid(doc: unknown): string {
    const r = refused(validateObject(doc));
    expect(r.code).toBe('HAWSER_INVALID_OBJECT');
    return r.message;
  }

  it('names the field and the value', () => {
    expect(invalid(subscription({ schedulingStrategy: 'Replicate' }))).toMatch(/spec\.schedulingStrategy: expected .*Replication.*, got "Replicate"/);
    expect(invalid(localization({ priority: 1001 }))).toMatch(/spec\.priority: expected <=1000, got 1001/);
    expect(invalid(subscription({ subscribers: [{ clusterAffinity: { matchExpressions: [{ key: 'region', operator: 'In' }] } }] }))).toContain(
      'spec.subscribers[0].clusterAffinity.matchExpressions[0]: values must be non-empty for In and NotIn',
    );
    expect(invalid(subscription({ subscribers: [{ clusterAffinity: { matchLabels: { env: 'not valid!' } } }] }))).toContain('spec.subscribers[0].clusterAffinity.matchLabels');
  });

  it('refuses unknown fields and missing ones', () => {
    expect(invalid(subscription({ subscriber: [] }))).toContain('spec.subscriber: unknown field');
    const { feeds: _feeds, ...noFeeds } = subscription({}).spec;
    expect(invalid({ ...subscription({}), spec: noFeeds })).toContain('spec.feeds: required');
    expect(invalid({ apiVersion: 'v1', kind: 'ConfigMap', metadata: {} })).toContain('metadata.name: required');
    expect(invalid({ kind: 'ConfigMap', metadata: { name: 'x' } })).toContain('apiVersion: required');
    expect(invalid('just text')).toContain('document: expected an object');
  });

  it('refuses override values that are not the patch their type says', () => {
    expect(invalid(localization({ overrides: [{ type: 'JSONPatch', value: '{"op": "replace"}' }] }))).toContain('spec.overrides[0].value');
    expect(invalid(localization({ overrides: [{ type: 'JSONPatch', value: '- op: frobnicate\n  path: /x' }] }))).toContain('op must be one of');
    expect(invalid(localization({ overrides: [{ type: 'MergePatch', value: '[1, 2]' }] }))).toContain('must be a mapping');
    expect(invalid(localization({ overrides: [{ type: 'MergePatch', value: 'a: [' }] }))).toContain('not valid JSON or YAML');
    expect(invalid(localization({ overrides: [{ type: 'FieldMergePatch', value: 'a: 1' }] }))).toContain('fieldPath must be a JSON pointer');
  });

  it('quotes a long value bounded', () => {
    const message = invalid(subscription({ schedulingStrategy: 'R'.repeat(100_000) }));
    expect(message).toContain('(100000 characters)');
    expect(message.length).toBeLessThan(1000);
  });

  it('lists at most ten problems and counts the rest', () => {
    const feeds = Array.from({ length: 30 }, () => ({ apiVersion: 'v1', kind: 'ConfigMap' }));
    expect(invalid(subscription({ feeds }))).toContain('and 20 more problems');
  });

  it('refuses kinds the hub writes itself', () => {
    const base = { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Base', metadata: { name: 'b', namespace: 'default' }, spec: { feeds: [] } };
    expect(refused(validateObject(base)).code).toBe('HAWSER_READ_ONLY_KIND');
    expect(ok(validateObject(base, { allowRendered: true })).resourceKind).toBe('Base');
    expect(refused(validateObject({ apiVersion: 'clusters.clusternet.io/v1beta1', kind: 'ManagedCluster', metadata: { name: 'm' } })).code).toBe('HAWSER_READ_ONLY_KIND');
  });
});

describe('parseDocuments', () => {
  it('reads multi-document YAML, skipping empty documents and unrolling a List', () => {
    const r = parseDocuments('a: 1\n---\n---\napiVersion: v1\nkind: List\nitems:\n  - b: 2\n  - c: 3\n', 'app.yaml');
    expect(r.ok && r.documents.map((d) => [d.source, d.doc])).toEqual([
      ['app.yaml, document 1', { a: 1 }],
      ['app.yaml, document 3, item 0', { b: 2 }],
      ['app.yaml, document 3, item 1', { c: 3 }],
    ]);
  });

  it('refuses invalid YAML naming the document and line', () => {
    const r = parseDocuments('a: 1\n---\nb: [1,\n  c: {\n', 'bad.yaml');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.code).toBe('HAWSER_INVALID_YAML');
    expect(!r.ok && r.message).toMatch(/^bad\.yaml, document 2: invalid YAML at line \d+/);
    const dup = parseDocuments('a: 1\na: 2\n');
    expect(!dup.ok && dup.code).toBe('HAWSER_INVALID_YAML');
  });
});

describe('resource names', () => {
  it('resolves plurals, singulars, short names and qualified names', () => {
    expect(resolveResourceName('subs')?.kind).toBe('Subscription');
    expect(resolveResourceName('Subscription')?.kind).toBe('Subscription');
    expect(resolveResourceName('desc')?.kind).toBe('Description');
    expect(resolveResourceName('loc')?.kind).toBe('Localization');
    expect(resolveResourceName('globalizations.apps.clusternet.io')?.kind).toBe('Globalization');
    expect(resolveResourceName('bases')?.kind).toBe('Base');
    expect(resolveResourceName('manifest')?.kind).toBe('Manifest');
    expect(resolveResourceName('deployments')).toBeUndefined();
  });
});
