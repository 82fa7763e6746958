import { describe, expect, it } from 'vitest';
import { RenderedView } from '../../src/hub/deployer/rendered-view.js';
import type { KubeObject } from '../../src/hub/store.js';

const owner = { namespace: 'default', name: 'sub' };
function manifest(name: string, replicas: number, sub = owner): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { name, namespace: 'clusternet-a', labels: { 'apps.clusternet.io/subs.name': sub.name, 'apps.clusternet.io/subs.namespace': sub.namespace } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { replicas: String(replicas) } },
  };
}
const names = (view: RenderedView) => view.owned('Manifest', owner).map((m) => `${m.metadata.name}=${(m.template as { data: { replicas: string } }).data.replicas}`).sort();

describe('RenderedView (the deployer\'s Manifests and Bases by subscription)', () => {
  it('a write that landed is seen at once; its own older or equal event never undoes a newer write', () => {
    const view = new RenderedView();
    view.wrote([{ op: 'put', kind: 'Manifest', key: { namespace: 'clusternet-a', name: 'm' }, value: manifest('m', 1) }], ['5']);
    expect(names(view)).toEqual(['m=1']);
    view.apply('Manifest', 'clusternet-a', 'm', manifest('m', 0), 4);
    expect(names(view)).toEqual(['m=1']);
    view.wrote([{ op: 'delete', kind: 'Manifest', key: { namespace: 'clusternet-a', name: 'm' } }], ['7']);
    expect(names(view)).toEqual([]);
    // The put's event comes back after the delete landed: still gone.
    view.apply('Manifest', 'clusternet-a', 'm', manifest('m', 1), 5);
    expect(names(view)).toEqual([]);
    view.apply('Manifest', 'clusternet-a', 'm', undefined, 7);
    // A newer write from elsewhere (the watch) is taken.
    view.apply('Manifest', 'clusternet-a', 'm', manifest('m', 2), 9);
    expect(names(view)).toEqual(['m=2']);
    // Another owner's and another kind's objects are apart.
    view.apply('Manifest', 'clusternet-a', 'other', manifest('other', 1, { namespace: 'default', name: 'x' }), 10);
    expect(names(view)).toEqual(['m=2']);
    expect(view.owned('Base', owner)).toEqual([]);
  });

  it('a relist drops what it no longer shows up to its version, and keeps writes after it', () => {
    const view = new RenderedView();
    view.apply('Manifest', 'clusternet-a', 'old', manifest('old', 1), 3);
    view.apply('Manifest', 'clusternet-a', 'kept', manifest('kept', 1), 4);
    view.wrote([{ op: 'put', kind: 'Manifest', key: { namespace: 'clusternet-a', name: 'new' }, value: manifest('new', 1) }], ['12']);
    view.relisted('Manifest', [{ object: manifest('kept', 2), resourceVersion: '8' }], 10);
    expect(names(view)).toEqual(['kept=2', 'new=1']);
  });
});
