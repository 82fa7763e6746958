import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  type ClusterRendering,
  decideRender,
  type Feed,
  type Globalization,
  type KubeObject,
  type Localization,
  type OverrideConfig,
  ownerName,
  type RenderCluster,
  type RenderInput,
  renderCluster,
  renderInputs,
  renderSubscription,
  sameJson,
  digestOf,
  feedKey,
  type SubscriptionRef,
} from '../../src/hub/render/index.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const examples = join(repoRoot, '../shared/examples/clusternet');

function example<T>(path: string): T {
  return parseYaml(readFileSync(join(examples, path), 'utf8')) as T;
}

const usWest: RenderCluster = {
  name: 'edge-west',
  namespace: 'clusternet-west1',
  id: '11111111-2222-4333-8444-555555555555',
  labels: { region: 'us-west', environment: 'production' },
};
const usEast: RenderCluster = {
  name: 'edge-east',
  namespace: 'clusternet-east1',
  id: '66666666-7777-4888-8999-aaaaaaaaaaaa',
  labels: { region: 'us-east', environment: 'production' },
};
const staging: RenderCluster = {
  name: 'edge-staging',
  namespace: 'clusternet-stage1',
  id: 'bbbbbbbb-cccc-4ddd-8eee-ffffffffffff',
  labels: { region: 'us-west', environment: 'staging' },
};

function byKind(r: ClusterRendering, kind: string, name: string): KubeObject {
  const m = r.manifests.find((x) => x.template.kind === kind && x.template.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name} in ${r.manifests.map((x) => x.key).join(', ')}`);
  return m.template;
}

// ---------------------------------------------------------------- small builders

const deployment = (name: string, replicas = 3, extra: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: 'default', labels: { app: name } },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: `${name}:1` }] } },
  },
  ...extra,
});

const configMap = (name: string, data: Record<string, string>): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default' },
  data,
});

const feedOf = (o: KubeObject): Feed => ({ apiVersion: o.apiVersion, kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name });

const subscription = (feeds: Feed[]): SubscriptionRef => ({ metadata: { name: 'sub', namespace: 'default' }, spec: { feeds } });

const loc = (name: string, feed: Feed, overrides: OverrideConfig[], priority?: number, namespace = usWest.namespace): Localization => ({
  metadata: { name, namespace },
  spec: { feed, overrides, overridePolicy: 'ApplyNow', ...(priority === undefined ? {} : { priority }) },
});

const glob = (name: string, feed: Feed, overrides: OverrideConfig[], priority?: number, clusterAffinity?: Globalization['spec']['clusterAffinity']): Globalization => ({
  metadata: { name },
  spec: { feed, overrides, overridePolicy: 'ApplyNow', ...(priority === undefined ? {} : { priority }), ...(clusterAffinity ? { clusterAffinity } : {}) },
});

function input(objects: KubeObject[], overrides: { locs?: Localization[]; globs?: Globalization[] } = {}, extra: Partial<RenderInput> = {}): RenderInput {
  return {
    subscription: subscription(objects.map(feedOf)),
    objects,
    cluster: usWest,
    globalizations: overrides.globs ?? [],
    localizations: overrides.locs ?? [],
    ...extra,
  };
}

const merge = (name: string, value: string): OverrideConfig => ({ name, type: 'MergePatch', value });
const jsonPatch = (name: string, value: string): OverrideConfig => ({ name, type: 'JSONPatch', value });

// ---------------------------------------------------------------- the shared example

describe('the overrides example (shared/examples/clusternet/overrides)', () => {
  const description = example<KubeObject>('replication/description.yaml');
  const sub = example<SubscriptionRef>('replication/subscription.yaml');
  const globalization = example<Globalization>('overrides/globalization.yaml');
  const localization = example<Localization>('overrides/localization.yaml');
  // The file asks for its namespace to be replaced with a real cluster's.
  localization.metadata.namespace = usWest.namespace;

  const renderings = renderSubscription({
    subscription: sub,
    objects: [description],
    globalizations: [globalization],
    localizations: [localization],
    clusters: [{ cluster: usWest }, { cluster: usEast }, { cluster: staging }],
  });
  const [west, east, stage] = renderings as [ClusterRendering, ClusterRendering, ClusterRendering];

  it('renders every object of the Description, with no failure', () => {
    for (const r of renderings) {
      expect(r.failures).toEqual([]);
      expect(r.unsupported).toEqual([]);
      expect(r.missing).toEqual([]);
      expect(r.manifests.map((m) => m.key)).toEqual(['apps/v1/Deployment/default/nginx', 'v1/Service/default/nginx-svc']);
    }
  });

  it('in the Localization cluster: 5 replicas, the regional image, and the Globalization labels kept', () => {
    const d = byKind(west, 'Deployment', 'nginx') as KubeObject & { spec: { replicas: number; template: { spec: { containers: { name: string; image: string }[] } } } };
    expect(d.spec.replicas).toBe(5);
    expect(d.spec.template.spec.containers).toEqual([{ name: 'nginx', image: 'us-west-registry.example.com/nginx:1.25' }]);
    expect(d.metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
    expect(byKind(west, 'Service', 'nginx-svc').metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
    expect(west.manifests.find((m) => m.template.kind === 'Deployment')?.applied).toEqual([
      'Globalization/add-monitoring-labels:add-labels',
      `Localization/${usWest.namespace}/nginx-localization-us-west:replicas-override`,
      `Localization/${usWest.namespace}/nginx-localization-us-west:image-override`,
    ]);
  });

  it('in another production cluster: the Description as written, plus the Globalization labels', () => {
    const d = byKind(east, 'Deployment', 'nginx') as KubeObject & { spec: { replicas: number; template: { spec: { containers: { image: string }[] } } } };
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.template.spec.containers[0]?.image).toBe('nginx:1.25');
    expect(d.metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
  });

  it('in a cluster the Globalization does not select: no labels', () => {
    expect(byKind(stage, 'Deployment', 'nginx').metadata.labels).toBeUndefined();
    expect(byKind(stage, 'Service', 'nginx-svc').metadata.labels).toBeUndefined();
  });

  it('a Base per cluster, in its dedicated namespace, with the subscription feeds', () => {
    expect(west.base.metadata.namespace).toBe(usWest.namespace);
    expect(east.base.metadata.namespace).toBe(usEast.namespace);
    expect(west.base.metadata.name).toBe(east.base.metadata.name);
    expect(west.base.metadata.name).toMatch(/^nginx-replicated-[0-9a-f]{5}$/);
    expect(west.base.spec.feeds).toEqual(sub.spec.feeds);
    expect(west.base.metadata.labels).toMatchObject({ 'apps.clusternet.io/subs.name': 'nginx-replicated', 'apps.clusternet.io/subs.namespace': 'default' });
  });
});

// ---------------------------------------------------------------- order

describe('override order', () => {
  const d = deployment('web');
  const replicasTo = (n: number): OverrideConfig => merge(`to-${n}`, `spec:\n  replicas: ${n}\n`);
  const replicasOf = (r: ClusterRendering): unknown => (byKind(r, 'Deployment', 'web').spec as { replicas: number }).replicas;

  it('a Localization of higher priority wins over a lower one, whatever order they come in', () => {
    const low = loc('low', feedOf(d), [replicasTo(2)], 100);
    const high = loc('high', feedOf(d), [replicasTo(7)], 200);
    expect(replicasOf(renderCluster(input([d], { locs: [low, high] })))).toBe(7);
    expect(replicasOf(renderCluster(input([d], { locs: [high, low] })))).toBe(7);
  });

  it('Globalizations apply before Localizations, whatever their priorities', () => {
    const g = glob('g', feedOf(d), [replicasTo(9)], 1000);
    const l = loc('l', feedOf(d), [replicasTo(4)], 0);
    expect(replicasOf(renderCluster(input([d], { globs: [g], locs: [l] })))).toBe(4);
  });

  it('priority defaults to 500; equal priorities apply by name', () => {
    const atDefault = loc('m', feedOf(d), [replicasTo(5)]);
    const below = loc('z', feedOf(d), [replicasTo(1)], 499);
    expect(replicasOf(renderCluster(input([d], { locs: [atDefault, below] })))).toBe(5);
    const a = loc('a', feedOf(d), [replicasTo(1)], 10);
    const b = loc('b', feedOf(d), [replicasTo(2)], 10);
    expect(replicasOf(renderCluster(input([d], { locs: [b, a] })))).toBe(2);
  });

  it("only Localizations in the cluster's namespace apply", () => {
    const elsewhere = loc('other', feedOf(d), [replicasTo(8)], 500, usEast.namespace);
    expect(replicasOf(renderCluster(input([d], { locs: [elsewhere] })))).toBe(3);
  });

  it("the scheduler's replicas apply last (Deployment spec.replicas, Job spec.parallelism)", () => {
    const job: KubeObject = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', namespace: 'default' }, spec: { parallelism: 4 } };
    const l = loc('l', feedOf(d), [replicasTo(9)]);
    const r = renderCluster(input([d, job], { locs: [l] }, { replicas: { 'apps/v1/Deployment/default/web': 2, 'batch/v1/Job/default/j': 1 } }));
    expect(replicasOf(r)).toBe(2);
    expect((byKind(r, 'Job', 'j').spec as { parallelism: number }).parallelism).toBe(1);
  });

  it('a Globalization selects clusters by the built-in cluster-id label', () => {
    const g = glob('by-id', feedOf(d), [replicasTo(6)], 500, { matchLabels: { 'clusters.clusternet.io/cluster-id': usWest.id } });
    expect(replicasOf(renderCluster(input([d], { globs: [g] })))).toBe(6);
    expect(replicasOf(renderCluster(input([d], { globs: [g] }, { cluster: usEast })))).toBe(3);
  });
});

// ---------------------------------------------------------------- override types

describe('override types', () => {
  it('JSONPatch (RFC 6902), its value in JSON or YAML', () => {
    const d = deployment('web');
    const r = renderCluster(
      input([d], {
        locs: [
          loc('l', feedOf(d), [
            jsonPatch('json', '[{"op":"add","path":"/metadata/labels/tier","value":"front"}]'),
            jsonPatch('yaml', '- op: remove\n  path: /metadata/labels/app\n'),
          ]),
        ],
      }),
    );
    expect(r.failures).toEqual([]);
    expect(byKind(r, 'Deployment', 'web').metadata.labels).toEqual({ tier: 'front' });
  });

  it('MergePatch (RFC 7396): null removes, lists are replaced', () => {
    const d = deployment('web');
    const r = renderCluster(input([d], { locs: [loc('l', feedOf(d), [merge('m', '{"metadata":{"labels":{"app":null,"x":"y"}},"spec":{"template":{"spec":{"containers":[{"name":"c"}]}}}}')])] }));
    const t = byKind(r, 'Deployment', 'web') as KubeObject & { spec: { template: { spec: { containers: unknown[] } } } };
    expect(t.metadata.labels).toEqual({ x: 'y' });
    expect(t.spec.template.spec.containers).toEqual([{ name: 'c' }]);
  });

  const cm = configMap('conf', {
    'app.yaml': 'server:\n  port: 8080\n  host: 0.0.0.0\nlog: info\n',
    'app.json': '{"server":{"port":8080},"features":["a"]}',
  });
  const field = (type: 'FieldMergePatch' | 'FieldJSONPatch', fieldPath: string, value: string, fieldFormat?: 'JSON' | 'YAML'): OverrideConfig => ({
    name: `${type}-${fieldPath}`,
    type,
    fieldPath,
    value,
    ...(fieldFormat ? { fieldFormat } : {}),
  });
  const data = (r: ClusterRendering): Record<string, string> => byKind(r, 'ConfigMap', 'conf').data as Record<string, string>;
  const one = (o: OverrideConfig): ClusterRendering => renderCluster(input([cm], { locs: [loc('l', feedOf(cm), [o])] }));

  it('FieldMergePatch on YAML text (the default format), values in YAML or JSON', () => {
    for (const value of ['server:\n  port: 9090\nlog: null\n', '{"server":{"port":9090},"log":null}']) {
      const r = one(field('FieldMergePatch', '/data/app.yaml', value));
      expect(r.failures).toEqual([]);
      expect(parseYaml(data(r)['app.yaml'] as string)).toEqual({ server: { port: 9090, host: '0.0.0.0' } });
      expect(data(r)['app.json']).toBe(cm.data && (cm.data as Record<string, string>)['app.json']);
    }
  });

  it('FieldMergePatch on JSON text, written back as JSON', () => {
    const r = one(field('FieldMergePatch', '/data/app.json', 'features: [b]\n', 'JSON'));
    expect(r.failures).toEqual([]);
    expect(JSON.parse(data(r)['app.json'] as string)).toEqual({ server: { port: 8080 }, features: ['b'] });
  });

  it('FieldJSONPatch on JSON text and on YAML text, values in JSON or YAML', () => {
    const onJson = one(field('FieldJSONPatch', '/data/app.json', '- op: add\n  path: /features/-\n  value: c\n', 'JSON'));
    expect(onJson.failures).toEqual([]);
    expect(JSON.parse(data(onJson)['app.json'] as string)).toEqual({ server: { port: 8080 }, features: ['a', 'c'] });
    const onYaml = one(field('FieldJSONPatch', '/data/app.yaml', '[{"op":"replace","path":"/server/port","value":1}]', 'YAML'));
    expect(onYaml.failures).toEqual([]);
    expect(parseYaml(data(onYaml)['app.yaml'] as string)).toEqual({ server: { port: 1, host: '0.0.0.0' }, log: 'info' });
  });

  it('a fieldPath that is missing, or text that is not its fieldFormat, fails with HAWSER_OVERRIDE_FAILED', () => {
    const missing = one(field('FieldMergePatch', '/data/nope.yaml', 'a: 1'));
    expect(missing.failures).toMatchObject([{ code: ErrorCode.OverrideFailed, object: 'v1/ConfigMap/default/conf' }]);
    expect(missing.failures[0]?.reason).toContain('/data/nope.yaml');
    const notJson = one(field('FieldMergePatch', '/data/app.yaml', '{"a":1}', 'JSON'));
    expect(notJson.failures).toMatchObject([{ code: ErrorCode.OverrideFailed }]);
    const badYaml = renderCluster(input([configMap('conf', { 'app.yaml': 'a: [1, 2\n' })], { locs: [loc('l', feedOf(cm), [field('FieldMergePatch', '/data/app.yaml', 'a: 1')])] }));
    expect(badYaml.failures).toMatchObject([{ code: ErrorCode.OverrideFailed }]);
    expect(badYaml.manifests).toEqual([]);
  });

  it('a value that is neither JSON nor YAML, or a JSONPatch that is not a list of operations, fails', () => {
    const d = deployment('web');
    for (const o of [merge('bad', 'a: [1\n'), jsonPatch('not-a-list', 'op: add'), { name: 'odd', type: 'StrategicMergePatch', value: '{}' }]) {
      const r = renderCluster(input([d], { locs: [loc('l', feedOf(d), [o])] }));
      expect(r.failures).toMatchObject([{ code: ErrorCode.OverrideFailed, override: { kind: 'Localization', name: 'l', override: o.name } }]);
    }
  });

  it('Helm overrides and HelmChart feeds are reported unsupported; everything else still renders', () => {
    const d = deployment('web');
    const chart: KubeObject = { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'HelmChart', metadata: { name: 'redis', namespace: 'default' }, spec: { chart: 'redis' } };
    const r = renderCluster(
      input([d, chart], { locs: [loc('l', feedOf(d), [{ name: 'vals', type: 'Helm', value: 'a: 1' }, merge('m', 'metadata: {labels: {ok: "yes"}}')])] }),
    );
    expect(r.failures).toEqual([]);
    expect(r.unsupported).toMatchObject([
      { code: ErrorCode.Unsupported, feed: feedOf(chart) },
      { code: ErrorCode.Unsupported, override: { name: 'l', override: 'vals' } },
    ]);
    expect(r.manifests.map((m) => m.key)).toEqual(['apps/v1/Deployment/default/web']);
    expect(byKind(r, 'Deployment', 'web').metadata.labels).toMatchObject({ ok: 'yes' });
  });

  it('a feed whose object is not on the hub is reported missing, not failed', () => {
    const d = deployment('web');
    const r = renderCluster({ ...input([d]), subscription: subscription([feedOf(d), { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'later' }]) });
    expect(r.failures).toEqual([]);
    expect(r.missing).toEqual([{ apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'later' }]);
    expect(r.manifests).toHaveLength(1);
  });

  it('fields a store or an apiserver set are not rendered', () => {
    const d = deployment('web', 3, { status: { replicas: 3 } });
    Object.assign(d.metadata, { uid: 'u', resourceVersion: '42', creationTimestamp: '2026-01-01T00:00:00Z', managedFields: [] });
    const t = byKind(renderCluster(input([d])), 'Deployment', 'web');
    expect(t.status).toBeUndefined();
    expect(Object.keys(t.metadata).sort()).toEqual(['labels', 'name', 'namespace']);
  });
});

// ---------------------------------------------------------------- failure

describe('an override that cannot apply', () => {
  const d = deployment('web');
  const svc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { ports: [{ port: 80 }] } };
  const good = loc('a-good', feedOf(d), [merge('label', 'metadata: {labels: {applied: "yes"}}')], 100);
  const broken = loc('b-broken', feedOf(d), [jsonPatch('missing-path', '[{"op":"replace","path":"/spec/strategy/type","value":"Recreate"}]')], 200);

  it('reports HAWSER_OVERRIDE_FAILED naming the override and the object, and keeps the previous rendering of that object', () => {
    const before = renderCluster(input([d, svc]));
    const after = renderCluster({ ...input([d, svc], { locs: [good, broken] }), previous: before });
    expect(after.failures).toHaveLength(1);
    const failure = after.failures[0];
    expect(failure).toMatchObject({
      code: ErrorCode.OverrideFailed,
      override: { kind: 'Localization', namespace: usWest.namespace, name: 'b-broken', override: 'missing-path' },
      object: 'apps/v1/Deployment/default/web',
    });
    // Where to report it: the same key the rendering's inputs use for that Localization.
    expect(ownerName(failure!.override!)).toBe(`Localization/${usWest.namespace}/b-broken`);
    expect(Object.keys(after.inputs.overrides)).toContain(ownerName(failure!.override!));
    expect(failure?.message).toContain('b-broken');
    expect(failure?.message).toContain('missing-path');
    expect(failure?.message).toContain('Deployment default/web');
    expect(failure?.reason).toContain('/spec/strategy/type');
    // Never half-applied: the good override of the same object is not applied either.
    const kept = after.manifests.find((m) => m.key === 'apps/v1/Deployment/default/web');
    expect(kept?.stale).toBe(true);
    expect(kept?.template).toEqual(byKind(before, 'Deployment', 'web'));
    // Other objects render as usual.
    expect(after.manifests.map((m) => m.key)).toEqual(before.manifests.map((m) => m.key));
    expect(after.revision).toBe(before.revision);
  });

  it('with no previous rendering the object waits; the others render', () => {
    const r = renderCluster(input([d, svc], { locs: [good, broken] }));
    expect(r.failures).toMatchObject([{ code: ErrorCode.OverrideFailed }]);
    expect(r.manifests.map((m) => m.key)).toEqual(['v1/Service/default/web']);
  });

  it('an override may not turn the object into another one', () => {
    const rename = loc('rename', feedOf(d), [merge('rename', 'metadata: {name: other}')]);
    expect(renderCluster(input([d], { locs: [rename] })).failures).toMatchObject([{ code: ErrorCode.OverrideFailed, object: 'apps/v1/Deployment/default/web' }]);
  });

  it('an invalid clusterAffinity fails the objects its Globalization names', () => {
    const g = glob('bad-affinity', feedOf(d), [merge('m', 'metadata: {labels: {a: b}}')], 500, { matchExpressions: [{ key: 'region', operator: 'In', values: [] }] });
    expect(renderCluster(input([d], { globs: [g] })).failures).toMatchObject([{ code: ErrorCode.OverrideFailed, override: { name: 'bad-affinity' } }]);
  });
});

// ---------------------------------------------------------------- Descriptions

describe('Description feeds', () => {
  const desc: KubeObject = {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Description',
    metadata: { name: 'bundle', namespace: 'default' },
    spec: {
      deployer: 'Generic',
      raw: [
        deployment('one'),
        configMap('two', { k: 'v' }),
        // Clusternet's own form: base64 of the object's JSON.
        Buffer.from(JSON.stringify(configMap('three', { k: 'v' }))).toString('base64'),
      ],
    },
  };
  const descFeed: Feed = { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Description', namespace: 'default', name: 'bundle' };

  it('a MergePatch naming the Description applies to every object in it', () => {
    const r = renderCluster(input([desc], { globs: [glob('g', descFeed, [merge('m', 'metadata: {labels: {all: "yes"}}')])] }));
    expect(r.failures).toEqual([]);
    expect(r.manifests).toHaveLength(3);
    for (const m of r.manifests) {
      expect(m.feed).toEqual(descFeed);
      expect(m.template.metadata.labels).toMatchObject({ all: 'yes' });
    }
  });

  it("hawser's own group names the same Description", () => {
    const own = { ...descFeed, apiVersion: 'apps.hawser.io/v1alpha1' };
    const r = renderCluster(input([desc], { locs: [loc('l', own, [merge('m', 'metadata: {labels: {own: "yes"}}')])] }));
    expect(r.manifests.every((m) => m.template.metadata.labels !== undefined)).toBe(true);
  });

  it('an override naming one object inside it applies to that object only', () => {
    const r = renderCluster(input([desc], { locs: [loc('l', { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'two' }, [jsonPatch('j', '[{"op":"replace","path":"/data/k","value":"w"}]')])] }));
    expect(r.failures).toEqual([]);
    expect(byKind(r, 'ConfigMap', 'two').data).toEqual({ k: 'w' });
    expect(byKind(r, 'ConfigMap', 'three').data).toEqual({ k: 'v' });
  });

  it('a JSONPatch naming the whole Description fails: it must name a single object', () => {
    const r = renderCluster(input([desc], { locs: [loc('l', descFeed, [jsonPatch('j', '[{"op":"add","path":"/metadata/labels","value":{}}]')])] }));
    expect(r.failures).toHaveLength(3);
    expect(r.failures.every((f) => f.code === ErrorCode.OverrideFailed)).toBe(true);
    expect(r.manifests).toEqual([]);
  });

  it("the scheduler's replicas reach a workload inside it by the workload's own feed key", () => {
    const r = renderCluster(input([desc], {}, { replicas: { 'apps/v1/Deployment/default/one': 1, 'apps.clusternet.io/v1alpha1/Description/default/bundle': 9 } }));
    expect((byKind(r, 'Deployment', 'one').spec as { replicas: number }).replicas).toBe(1);
    const byDescription = renderCluster(input([desc], {}, { replicas: { 'apps.clusternet.io/v1alpha1/Description/default/bundle': 9 } }));
    expect((byKind(byDescription, 'Deployment', 'one').spec as { replicas: number }).replicas).toBe(3);
  });

  it('a raw object that cannot be read, or one fed twice, is HAWSER_RENDER_FAILED; the rest render', () => {
    const bad: KubeObject = { ...desc, spec: { deployer: 'Generic', raw: ['not base64 json', { kind: 'NoApiVersion' }, deployment('one')] } };
    const twice = renderCluster(input([bad, deployment('one')]));
    expect(twice.failures.map((f) => f.code)).toEqual([ErrorCode.RenderFailed, ErrorCode.RenderFailed, ErrorCode.RenderFailed]);
    expect(twice.failures.map((f) => f.reason)).toEqual([
      expect.stringContaining('spec.raw[0]'),
      expect.stringContaining('spec.raw[1]'),
      expect.stringContaining('also fed by'),
    ]);
    expect(twice.manifests).toMatchObject([{ key: 'apps/v1/Deployment/default/one', feed: descFeed }]);
  });

  it('a Description with deployer Helm is unsupported', () => {
    const helm: KubeObject = { ...desc, spec: { deployer: 'Helm', charts: [{ name: 'c', namespace: 'default' }] } };
    const r = renderCluster(input([helm]));
    expect(r.unsupported).toMatchObject([{ code: ErrorCode.Unsupported, feed: descFeed }]);
    expect(r.manifests).toEqual([]);
  });
});

// ---------------------------------------------------------------- many clusters

describe('renderSubscription', () => {
  it('gives each cluster what renderCluster gives it alone; a patch edited in one object never leaks into another', () => {
    const a = deployment('a');
    const b = deployment('b');
    // A merge patch puts a list in (RFC 7396 replaces lists whole), in both objects and both clusters.
    const image = (n: string): OverrideConfig => merge('m', `spec: {template: {spec: {containers: [{name: c, image: "${n}"}]}}}`);
    const imageA = glob('image-a', feedOf(a), [image('img:1')]);
    const imageB = glob('image-b', feedOf(b), [image('img:1')]);
    // In the west cluster only, a JSON patch edits that list in one object.
    const edit = loc('edit', feedOf(a), [jsonPatch('j', '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"img:2"}]')]);
    const shared = { subscription: subscription([feedOf(a), feedOf(b)]), objects: [a, b], globalizations: [imageA, imageB], localizations: [edit] };
    const [west, east] = renderSubscription({ ...shared, clusters: [{ cluster: usWest }, { cluster: usEast }] }) as [ClusterRendering, ClusterRendering];
    expect(west).toEqual(renderCluster({ ...shared, cluster: usWest }));
    expect(east).toEqual(renderCluster({ ...shared, cluster: usEast }));
    const imageOf = (r: ClusterRendering, name: string): unknown =>
      (byKind(r, 'Deployment', name).spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0]?.image;
    expect(imageOf(west, 'a')).toBe('img:2');
    expect(imageOf(west, 'b')).toBe('img:1');
    expect(imageOf(east, 'a')).toBe('img:1');
    expect(imageOf(east, 'b')).toBe('img:1');
  });
});

describe('renderSubscription: one rendering per distinct set of overrides and replicas', () => {
  it('clusters rendered alike share one frozen rendering; a cluster with its own override or replicas gets its own; each is what renderCluster gives', () => {
    const web = deployment('web', 3);
    const conf = configMap('conf', { a: '1' });
    const image = glob('image', feedOf(web), [merge('m', 'spec: {template: {spec: {containers: [{name: c, image: "img:1"}]}}}')]);
    const local = loc('east-only', feedOf(web), [merge('m', 'metadata: {labels: {east: "yes"}}')], undefined, usEast.namespace);
    const shared = { subscription: subscription([feedOf(web), feedOf(conf)]), objects: [web, conf], globalizations: [image], localizations: [local] };
    const clusters = [{ cluster: usWest }, { cluster: staging }, { cluster: usEast }, { cluster: { ...usWest, name: 'edge-west2', namespace: 'clusternet-west2' }, replicas: { [feedKey(feedOf(web))]: 1 } }];
    const [west, stage, east, divided] = renderSubscription({ ...shared, clusters }) as [ClusterRendering, ClusterRendering, ClusterRendering, ClusterRendering];
    for (const [i, r] of [west, stage, east, divided].entries()) expect(r).toEqual(renderCluster({ ...shared, ...clusters[i]! }));

    // West and staging: the same overrides, no replicas: the very same objects, frozen.
    expect(byKind(stage, 'Deployment', 'web')).toBe(byKind(west, 'Deployment', 'web'));
    expect(byKind(stage, 'ConfigMap', 'conf')).toBe(byKind(west, 'ConfigMap', 'conf'));
    expect(stage.revision).toBe(west.revision);
    const template = byKind(west, 'Deployment', 'web');
    expect(Object.isFrozen(template)).toBe(true);
    expect(() => {
      (template.metadata as Record<string, unknown>).name = 'changed';
    }).toThrow(TypeError);
    expect(() => {
      ((template.spec as { template: { spec: { containers: Array<{ image: string }> } } }).template.spec.containers[0]!).image = 'img:evil';
    }).toThrow(TypeError);
    // What the caller may change of its own rendering stays its own.
    west.manifests[0]!.applied.push('mine');
    expect(stage.manifests[0]!.applied).not.toContain('mine');

    // East has its own Localization, the divided cluster its own replicas: renderings of their own.
    expect(byKind(east, 'Deployment', 'web')).not.toBe(byKind(west, 'Deployment', 'web'));
    expect(byKind(east, 'Deployment', 'web').metadata.labels).toMatchObject({ east: 'yes' });
    expect(byKind(west, 'Deployment', 'web').metadata.labels ?? {}).not.toHaveProperty('east');
    expect((byKind(divided, 'Deployment', 'web').spec as { replicas: number }).replicas).toBe(1);
    expect((byKind(west, 'Deployment', 'web').spec as { replicas: number }).replicas).toBe(3);
    expect(new Set([west.revision, east.revision, divided.revision]).size).toBe(3);
  });

  it('a failing override keeps each cluster its own previous rendering, even where the failing rendering is shared', () => {
    const web = deployment('web', 3);
    const bad = glob('bad', feedOf(web), [jsonPatch('j', '[{"op":"replace","path":"/spec/missing/field","value":1}]')]);
    const shared = { subscription: subscription([feedOf(web)]), objects: [web], globalizations: [bad], localizations: [] };
    const previousOf = (replicas: number) => ({ manifests: [{ key: feedKey(feedOf(web)), feed: feedOf(web), template: deployment('web', replicas), applied: [] }] });
    const clusters = [{ cluster: usWest, previous: previousOf(1) }, { cluster: usEast, previous: previousOf(2) }];
    const [west, east] = renderSubscription({ ...shared, clusters }) as [ClusterRendering, ClusterRendering];
    expect(west).toEqual(renderCluster({ ...shared, ...clusters[0]! }));
    expect(east).toEqual(renderCluster({ ...shared, ...clusters[1]! }));
    expect((byKind(west, 'Deployment', 'web').spec as { replicas: number }).replicas).toBe(1);
    expect((byKind(east, 'Deployment', 'web').spec as { replicas: number }).replicas).toBe(2);
    expect(west.revision).not.toBe(east.revision);
  });
});

describe('sameJson', () => {
  const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b', ''), fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('x', 'y', 'z'), tie('value'), { maxKeys: 3 })),
  })).value;

  it('agrees with comparing digests, on any two JSON values (undefined keys absent, undefined in arrays null)', () => {
    fc.assert(
      fc.property(json, json, (a, b) => {
        expect(sameJson(a, b)).toBe(digestOf(a) === digestOf(b));
        expect(sameJson(a, structuredClone(a))).toBe(true);
      }),
      { numRuns: 2000 },
    );
    expect(sameJson({ k: null, j: undefined }, { k: undefined, j: 1 })).toBe(false);
    expect(sameJson({ k: undefined }, {})).toBe(true);
    expect(sameJson([undefined], [null])).toBe(true);
    expect(sameJson({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true);
  });
});

// ---------------------------------------------------------------- revision

describe('revision', () => {
  function reorderKeys(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(reorderKeys);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reorderKeys(v)]));
  }

  it('is stable across runs, key order and feed order, and changes when content changes', () => {
    const d = deployment('web');
    const c = configMap('conf', { a: '1', b: '2' });
    const first = renderCluster(input([d, c]));
    expect(first.revision).toMatch(/^[0-9a-f]{64}$/);
    expect(renderCluster(input([d, c])).revision).toBe(first.revision);
    expect(renderCluster(input([reorderKeys(c) as KubeObject, reorderKeys(d) as KubeObject])).revision).toBe(first.revision);
    expect(renderCluster(input([d, configMap('conf', { a: '1', b: '3' })])).revision).not.toBe(first.revision);
    expect(renderCluster(input([d, c], { locs: [loc('l', feedOf(d), [merge('m', 'spec: {replicas: 4}')])] })).revision).not.toBe(first.revision);
  });
});

// ---------------------------------------------------------------- overridePolicy

describe('overridePolicy (decideRender)', () => {
  const d = deployment('web');
  const now = (n: number, policy: 'ApplyNow' | 'ApplyLater'): Localization => ({
    ...loc('l', feedOf(d), [merge('m', `spec: {replicas: ${n}}`)]),
    spec: { feed: feedOf(d), overrides: [merge('m', `spec: {replicas: ${n}}`)], overridePolicy: policy },
  });

  it('renders the first time, and after no change does not', () => {
    const i = renderInputs(input([d]));
    expect(decideRender(undefined, i)).toEqual({ render: true, reason: 'first-rendering' });
    expect(decideRender(i, renderInputs(input([d])))).toMatchObject({ render: false, reason: 'unchanged' });
  });

  it('ApplyNow re-renders at once; ApplyLater waits for the next change of anything else', () => {
    const previous = renderCluster(input([d], { locs: [now(2, 'ApplyNow')] }));
    expect(decideRender(previous.inputs, renderInputs(input([d], { locs: [now(5, 'ApplyNow')] })))).toEqual({ render: true, reason: 'apply-now' });

    const later = renderInputs(input([d], { locs: [now(5, 'ApplyLater')] }));
    expect(decideRender(previous.inputs, later)).toEqual({ render: false, reason: 'apply-later', waiting: [`Localization/${usWest.namespace}/l`] });

    // The next change (the fed Deployment's image) renders, with the waiting override.
    const changed = deployment('web', 3);
    (changed.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0]!.image = 'web:2';
    const next = input([changed], { locs: [now(5, 'ApplyLater')] });
    expect(decideRender(previous.inputs, renderInputs(next))).toEqual({ render: true, reason: 'inputs-changed' });
    expect((byKind(renderCluster(next), 'Deployment', 'web').spec as { replicas: number }).replicas).toBe(5);
  });

  it('a removed override counts with the policy it had; Clusternet defaults to ApplyLater', () => {
    const withNow = renderInputs(input([d], { locs: [now(2, 'ApplyNow')] }));
    const without = renderInputs(input([d]));
    expect(decideRender(withNow, without)).toMatchObject({ render: true, reason: 'apply-now' });
    const unset: Localization = { metadata: { name: 'u', namespace: usWest.namespace }, spec: { feed: feedOf(d), overrides: [merge('m', 'spec: {replicas: 1}')] } };
    expect(decideRender(without, renderInputs(input([d], { locs: [unset] })))).toMatchObject({ render: false, reason: 'apply-later' });
  });

  it('an override that concerns none of the feeds is no input', () => {
    const other = loc('other', { apiVersion: 'v1', kind: 'Secret', namespace: 'default', name: 'x' }, [merge('m', 'a: 1')]);
    expect(renderInputs(input([d], { locs: [other] })).overrides).toEqual({});
  });
});

// ---------------------------------------------------------------- property

describe('properties', () => {
  it('rendering is deterministic and independent of the input order of overrides with distinct priorities', () => {
    const d = deployment('web');
    const c = configMap('conf', { 'app.yaml': 'a: 1\n' });
    const targets = [feedOf(d), feedOf(c)];
    const override = fc.record({
      target: fc.integer({ min: 0, max: 1 }),
      label: fc.constantFrom('a', 'b', 'c'),
      value: fc.constantFrom('x', 'y', 'z', null),
      cluster: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 1000 }), { minLength: 1, maxLength: 8 }),
        fc.array(override, { minLength: 8, maxLength: 8 }),
        fc.array(fc.integer(), { minLength: 8, maxLength: 8 }),
        fc.boolean(),
        (priorities, specs, order, feedsReversed) => {
          const locs: Localization[] = [];
          const globs: Globalization[] = [];
          priorities.forEach((priority, i) => {
            const s = specs[i]!;
            const patch = merge(`o${i}`, JSON.stringify({ metadata: { labels: { [s.label]: s.value } } }));
            const feed = targets[s.target]!;
            if (s.cluster) globs.push(glob(`g${i}`, feed, [patch], priority));
            else locs.push(loc(`l${i}`, feed, [patch], priority));
          });
          // A permutation of each list, drawn by fast-check.
          const permute = <T,>(list: T[]): T[] =>
            list
              .map((item, i) => ({ item, rank: order[i] ?? 0, i }))
              .sort((a, b) => a.rank - b.rank || b.i - a.i)
              .map((x) => x.item);
          const one = renderCluster(input([d, c], { locs, globs }));
          const again = renderCluster(input([d, c], { locs, globs }));
          const permuted = renderCluster({
            ...input(feedsReversed ? [c, d] : [d, c], { locs: permute(locs), globs: permute(globs) }),
            subscription: subscription([feedOf(d), feedOf(c)]),
          });
          expect(again).toEqual(one);
          expect(permuted.manifests).toEqual(one.manifests);
          expect(permuted.revision).toBe(one.revision);
          expect(permuted.inputs).toEqual(one.inputs);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never throws on any override: each one applies, or is reported with a code and the object keeps its previous rendering', () => {
    const d = deployment('web');
    const c = configMap('conf', { 'app.yaml': 'a: 1\n', 'app.json': '{"a":1}' });
    const before = renderCluster(input([d, c]));
    const text = fc.oneof(
      fc.string(),
      fc.json(),
      fc.constantFrom('- op: add\n  path: /metadata/labels/x\n  value: y', '[{"op":"remove","path":"/spec"}]', 'metadata: {name: other}', 'a: *x', '{"op":1}', 'null', '[]'),
    );
    const config = fc.record({
      name: fc.string({ maxLength: 8 }),
      type: fc.constantFrom('JSONPatch', 'MergePatch', 'FieldJSONPatch', 'FieldMergePatch', 'Helm', 'Bogus'),
      value: text,
      fieldPath: fc.constantFrom(undefined, '', '/data/app.yaml', '/data/app.json', '/data', '/spec/replicas', 'data', '/data/~1x'),
      fieldFormat: fc.constantFrom(undefined, 'YAML', 'JSON', 'TOML'),
    });
    const outcomes = { failed: 0, applied: 0 };
    fc.assert(
      fc.property(fc.array(config, { minLength: 1, maxLength: 4 }), fc.boolean(), (configs, onConfigMap) => {
        const overrides = configs.map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as unknown as OverrideConfig);
        const target = onConfigMap ? c : d;
        const r = renderCluster({ ...input([d, c], { locs: [loc('l', feedOf(target), overrides)] }), previous: before });
        const failed = r.failures.length > 0;
        outcomes[failed ? 'failed' : 'applied'] += 1;
        expect(r.manifests.map((m) => m.key)).toEqual(before.manifests.map((m) => m.key));
        expect(r.failures.every((f) => f.code === ErrorCode.OverrideFailed)).toBe(true);
        const rendered = r.manifests.find((m) => m.template.kind === target.kind)!;
        const previous = before.manifests.find((m) => m.key === rendered.key)!;
        expect(rendered.stale === true).toBe(failed);
        // A failed object is exactly its previous rendering.
        expect(!failed || isDeepStrictEqual(rendered.template, previous.template)).toBe(true);
      }),
      { numRuns: 300 },
    );
    // Both outcomes were drawn.
    expect(outcomes.failed).toBeGreaterThan(0);
    expect(outcomes.applied).toBeGreaterThan(0);
  });
});
