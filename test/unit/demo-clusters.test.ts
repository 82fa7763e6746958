import { describe, expect, it } from 'vitest';
import { demoClusterSpecs } from '../../src/cli/demo-clusters.js';

describe('hawser demo --cluster NAME[:k=v,k=v]', () => {
  it('gives each named cluster exactly its labels, in the order given', () => {
    expect(demoClusterSpecs(['us-west-1:environment=production,region=us-west', 'lab'], 3)).toEqual([
      { name: 'us-west-1', labels: { environment: 'production', region: 'us-west' } },
      { name: 'lab', labels: {} },
    ]);
  });

  it('without --cluster, --clusters N makes edge-1..N labelled site and tier', () => {
    expect(demoClusterSpecs([], 2)).toEqual([
      { name: 'edge-1', labels: { site: 'edge-1', tier: 'edge' } },
      { name: 'edge-2', labels: { site: 'edge-2', tier: 'edge' } },
    ]);
  });

  it.each([
    ['Bad_Name:a=b', /cluster name/],
    ['ok:novalue', /is not key=value/],
    ['ok:a=b=c!', /--cluster ok/],
  ])('refuses %s with a message naming the problem', (spec, message) => {
    expect(() => demoClusterSpecs([spec], 1)).toThrow(message);
  });

  it('refuses a name given twice and more than five clusters', () => {
    expect(() => demoClusterSpecs(['a', 'a:x=y'], 1)).toThrow(/"a" is given twice/);
    expect(() => demoClusterSpecs(['a', 'b', 'c', 'd', 'e', 'f'], 1)).toThrow(/at most 5 clusters/);
  });
});
