import { createHash } from 'node:crypto';
import type { KubeObject } from '../store/types.js';
import { type Feed, type RenderedManifest } from '../render/index.js';

// What the deployer writes per cluster: a Manifest per rendered object, in
// the cluster's dedicated namespace (Clusternet's Manifest: the object in
// `template`), and the sync layer's contract. Pure.

export const manifestApiVersion = 'apps.clusternet.io/v1alpha1';
export const subsNameLabel = 'apps.clusternet.io/subs.name';
export const subsNamespaceLabel = 'apps.clusternet.io/subs.namespace';
/** Clusternet's feed key (apiVersion/kind[/namespace]/name) of the object in `template`. */
export const feedKeyAnnotation = 'apps.hawser.io/feed-key';

/**
 * A Manifest as the hub stores it. `template` is the rendered object, ready
 * to apply; `feed` is the subscription feed it came from (a Description for
 * its raw objects).
 */
export interface ManifestObject extends KubeObject {
  apiVersion: typeof manifestApiVersion;
  kind: 'Manifest';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    resourceVersion?: string;
  };
  template: KubeObject;
  feed: Feed;
}

/**
 * The Manifest's name: readable kind-name (at most 40 characters of
 * [a-z0-9-]) and 20 hex of sha256("<subscription namespace>/<name>\n<feed
 * key>"), so one object of one subscription always has the same name and two
 * subscriptions never share one.
 */
export function manifestName(subscription: { namespace: string; name: string }, key: string): string {
  const hash = createHash('sha256').update(`${subscription.namespace}/${subscription.name}\n${key}`).digest('hex').slice(0, 20);
  // key = apiVersion/kind[/namespace]/name; a core apiVersion (v1) has no group segment.
  const parts = key.split('/');
  const kind = /^v\d+((alpha|beta)\d+)?$/.test(parts[0] ?? '') ? parts[1] : parts[2];
  const readable = `${kind ?? ''}-${parts[parts.length - 1] ?? ''}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  return readable ? `${readable}-${hash}` : hash;
}

export function toManifest(subscription: { namespace: string; name: string }, clusterNamespace: string, rendered: Pick<RenderedManifest, 'key' | 'feed' | 'template'>): ManifestObject {
  return {
    apiVersion: manifestApiVersion,
    kind: 'Manifest',
    metadata: {
      name: manifestName(subscription, rendered.key),
      namespace: clusterNamespace,
      labels: { [subsNameLabel]: subscription.name, [subsNamespaceLabel]: subscription.namespace },
      annotations: { [feedKeyAnnotation]: rendered.key },
    },
    template: rendered.template,
    feed: rendered.feed,
  };
}

/** The subscription ("namespace/name") an object's labels say it belongs to. */
export function ownerOf(object: { metadata: { labels?: unknown } }): { namespace: string; name: string } | undefined {
  const labels = object.metadata.labels as Record<string, string> | undefined;
  const name = labels?.[subsNameLabel];
  const namespace = labels?.[subsNamespaceLabel];
  return name !== undefined && namespace !== undefined ? { namespace, name } : undefined;
}
