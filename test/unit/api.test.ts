import { describe, expect, it } from 'vitest';
import {
  type ClusterRegistrationInput,
  dns1123LabelProblem,
  isUuid,
  labelKeyProblem,
  labelProblems,
  labelValueProblem,
  maxLabels,
  maxLabelsBytes,
  parseLabelSelectorString,
  registrationProblems,
  type SyncMode,
} from '../../src/api/index.js';

const valid: ClusterRegistrationInput = {
  clusterId: '3f2b8c1e-7a4d-4e2f-9b6a-1c0d2e3f4a5b',
  clusterName: 'edge-berlin-1',
  clusterType: 'EdgeCluster',
  clusterLabels: { 'topology.kubernetes.io/region': 'eu-central', env: 'prod', empty: '' },
  syncMode: 'Dual',
};

function problemsWith(change: Partial<ClusterRegistrationInput>): string[] {
  return registrationProblems({ ...valid, ...change });
}

/** Exactly one problem, which starts with the field name and quotes the bad value. */
function expectOneProblem(problems: string[], field: string, value: string): void {
  expect(problems).toHaveLength(1);
  expect(problems[0]!.startsWith(`${field}:`)).toBe(true);
  expect(problems[0]).toContain(`"${value}"`);
}

describe('registrationProblems', () => {
  it('finds nothing wrong with a valid registration', () => {
    expect(registrationProblems(valid)).toEqual([]);
    expect(problemsWith({ clusterNamespace: 'edge-system' })).toEqual([]);
    for (const syncMode of ['Push', 'Pull', 'Dual'] as const) expect(problemsWith({ syncMode })).toEqual([]);
  });

  it.each([
    ['upper case', 'Edge-1'],
    ['a leading dash', '-edge'],
    ['a trailing dash', 'edge-'],
    ['an underscore', 'edge_1'],
    ['a dot', 'edge.1'],
    ['nothing', ''],
    ['61 characters', 'a'.repeat(61)],
  ])('rejects a cluster name with %s, naming the field and value', (_what, clusterName) => {
    expectOneProblem(problemsWith({ clusterName }), 'clusterName', clusterName);
  });

  it('accepts a cluster name of exactly 60 characters', () => {
    expect(problemsWith({ clusterName: 'a'.repeat(60) })).toEqual([]);
  });

  it('says how long a too-long name is', () => {
    const [problem] = problemsWith({ clusterName: 'a'.repeat(61) });
    expect(problem).toContain('60');
    expect(problem).toContain('61');
  });

  it.each([
    ['not a UUID', 'not-a-uuid'],
    ['upper case', '3F2B8C1E-7A4D-4E2F-9B6A-1C0D2E3F4A5B'],
    ['missing a group', '3f2b8c1e-7a4d-4e2f-1c0d2e3f4a5b'],
    ['empty', ''],
  ])('rejects a clusterId that is %s', (_what, clusterId) => {
    expectOneProblem(problemsWith({ clusterId }), 'clusterId', clusterId);
  });

  it('rejects a bad sync mode naming it and the allowed ones', () => {
    const problems = problemsWith({ syncMode: 'Sideways' as SyncMode });
    expectOneProblem(problems, 'syncMode', 'Sideways');
    for (const mode of ['Push', 'Pull', 'Dual']) expect(problems[0]).toContain(mode);
  });

  it('rejects a bad cluster type and a bad namespace', () => {
    expectOneProblem(problemsWith({ clusterType: '9lives' }), 'clusterType', '9lives');
    expectOneProblem(problemsWith({ clusterType: '' }), 'clusterType', '');
    expectOneProblem(problemsWith({ clusterNamespace: 'Bad_NS' }), 'clusterNamespace', 'Bad_NS');
  });

  it.each([
    ['a space', 'bad key'],
    ['a leading dash', '-app'],
    ['an empty prefix', '/app'],
    ['an upper-case prefix', 'Example.com/app'],
    ['two slashes', 'example.com/a/b'],
    ['an empty name', 'example.com/'],
    ['a 64-character name', 'x'.repeat(64)],
  ])('rejects a label key with %s, naming the key', (_what, key) => {
    const problems = problemsWith({ clusterLabels: { ok: 'yes', [key]: 'v' } });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith('clusterLabels:')).toBe(true);
    expect(problems[0]).toContain(`"${key}"`);
  });

  it.each([
    ['a space', 'two words'],
    ['a trailing dash', 'value-'],
    ['a slash', 'a/b'],
    ['64 characters', 'v'.repeat(64)],
  ])('rejects a label value with %s, naming the key and the value', (_what, value) => {
    const problems = problemsWith({ clusterLabels: { tier: value } });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith('clusterLabels:')).toBe(true);
    expect(problems[0]).toContain(`"${value}"`);
    expect(problems[0]).toContain('"tier"');
  });

  it('lists every problem at once, each naming its own field', () => {
    const problems = registrationProblems({
      clusterId: 'nope',
      clusterName: 'NOPE',
      clusterType: '',
      clusterLabels: { 'bad key': 'bad value!' },
      syncMode: 'Never' as SyncMode,
    });
    expect(problems).toHaveLength(6);
    for (const field of ['clusterId', 'clusterName', 'clusterType', 'syncMode']) {
      expect(problems.filter((p) => p.startsWith(`${field}:`))).toHaveLength(1);
    }
    expect(problems.filter((p) => p.startsWith('clusterLabels:'))).toHaveLength(2);
  });
});

describe('label helpers', () => {
  it('accepts keys and values Kubernetes accepts', () => {
    for (const key of ['app', 'app.kubernetes.io/name', 'a', 'A_b.c-D', 'x'.repeat(63), `${'p'.repeat(10)}.io/${'n'.repeat(63)}`]) {
      expect(labelKeyProblem(key)).toBeUndefined();
    }
    for (const value of ['', 'v', 'V1.2_3-x', 'v'.repeat(63)]) expect(labelValueProblem(value)).toBeUndefined();
  });

  it('names the bad part of a key', () => {
    expect(labelKeyProblem('Bad.Prefix/app')).toContain('"Bad.Prefix"');
    expect(labelKeyProblem('example.com/-app')).toContain('"-app"');
  });

  it('labelProblems prefixes each problem with the field and names the key', () => {
    const problems = labelProblems({ good: 'ok', 'bad key': 'ok', fine: 'bad value!' }, 'matchLabels');
    expect(problems).toHaveLength(2);
    expect(problems.every((p) => p.startsWith('matchLabels: '))).toBe(true);
    expect(problems.some((p) => p.includes('"bad key"'))).toBe(true);
    expect(problems.some((p) => p.includes('"bad value!"') && p.includes('"fine"'))).toBe(true);
    expect(labelProblems({}, 'x')).toEqual([]);
  });

  it('dns1123LabelProblem and isUuid', () => {
    expect(dns1123LabelProblem('abc-123')).toBeUndefined();
    expect(dns1123LabelProblem('a'.repeat(63))).toBeUndefined();
    expect(dns1123LabelProblem('a'.repeat(64))).toBeDefined();
    expect(dns1123LabelProblem('abc', 2)).toBeDefined();
    expect(isUuid('3f2b8c1e-7a4d-4e2f-9b6a-1c0d2e3f4a5b')).toBe(true);
    expect(isUuid(' 3f2b8c1e-7a4d-4e2f-9b6a-1c0d2e3f4a5b')).toBe(false);
  });
});

describe('parseLabelSelectorString', () => {
  it('parses key=value pairs, trimming spaces', () => {
    expect(parseLabelSelectorString('env=prod,region=eu-central', 'cluster-labels')).toEqual({ env: 'prod', region: 'eu-central' });
    expect(parseLabelSelectorString(' env = prod , app.kubernetes.io/name=web ', 'cluster-labels')).toEqual({
      env: 'prod',
      'app.kubernetes.io/name': 'web',
    });
    expect(parseLabelSelectorString('flag=', 'cluster-labels')).toEqual({ flag: '' });
  });

  it('parses an empty string as no labels', () => {
    expect(parseLabelSelectorString('', 'cluster-labels')).toEqual({});
    expect(parseLabelSelectorString('   ', 'cluster-labels')).toEqual({});
  });

  it.each(['env', '=prod', 'env=prod,', 'env=prod,,region=eu'])('rejects %j as not key=value, naming the field', (text) => {
    expect(() => parseLabelSelectorString(text, 'cluster-labels')).toThrow(RangeError);
    expect(() => parseLabelSelectorString(text, 'cluster-labels')).toThrow(/^cluster-labels: /);
  });

  it('names the offending part', () => {
    expect(() => parseLabelSelectorString('env=prod,oops', 'cluster-labels')).toThrow('"oops"');
  });

  it('rejects an invalid key or value, naming it', () => {
    expect(() => parseLabelSelectorString('bad key=v', 'cluster-labels')).toThrow('"bad key"');
    expect(() => parseLabelSelectorString('env=bad value!', 'cluster-labels')).toThrow('"bad value!"');
    expect(() => parseLabelSelectorString('-env=prod', 'cluster-labels')).toThrow(/cluster-labels: .*"-env"/);
    expect(() => parseLabelSelectorString('a=b=c', 'cluster-labels')).toThrow('"b=c"');
  });
});

describe('bounds on untrusted input', () => {
  it('accepts as many valid labels as the bound allows, and refuses one more with a single problem', () => {
    const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(labelProblems(labels(maxLabels), 'labels')).toEqual([]);
    expect(labelProblems(labels(10_000), 'labels')).toEqual([`labels: 10000 labels exceed the limit of ${maxLabels}`]);
  });

  it('refuses labels whose keys and values exceed 256 KiB in total, as Kubernetes bounds annotations', () => {
    // Valid one by one: keys of a 253-character prefix and a 63-character name, values of 63.
    const labels = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${'p'.repeat(249)}${String(i).padStart(4, '0')}/${'n'.repeat(63)}`, 'v'.repeat(63)]));
    expect(labelProblems(labels(600), 'labels')).toEqual([]);
    const problems = labelProblems(labels(700), 'labels');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`labels: labels of \\d+ bytes in total exceed the limit of ${maxLabelsBytes} bytes`));
  });

  it('quotes a 1 MB name bounded: its first characters and its length', () => {
    const huge = 'x'.repeat(1_000_000);
    const problems = problemsWith({ clusterName: huge, clusterId: huge });
    expect(problems).toHaveLength(2);
    for (const p of problems) {
      expect(p.length).toBeLessThan(600);
      expect(p).toContain('(1000000 characters)');
    }
  });

  it('lists at most ten label problems and counts the rest', () => {
    const labels = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`bad key ${i}`, 'v']));
    const problems = labelProblems(labels, 'labels');
    expect(problems).toHaveLength(11);
    expect(problems[10]).toBe('labels: and 40 more problems');
  });
});
