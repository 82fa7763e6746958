import { describe, expect, it } from 'vitest';
import { parseQuantity, sumQuantities } from '../../src/agent/quantity.js';

describe('parseQuantity', () => {
  it.each([
    ['2', 2],
    ['1500m', 1.5],
    ['250m', 0.25],
    ['0.5', 0.5],
    ['1k', 1_000],
    ['1M', 1_000_000],
    ['2G', 2_000_000_000],
    ['1Ki', 1_024],
    ['128Mi', 128 * 1_048_576],
    ['1Gi', 1_073_741_824],
    ['1.5Gi', 1.5 * 1_073_741_824],
    ['1Ti', 2 ** 40],
    ['1e3', 1_000],
    ['5E', 5e18],
    [' 4Gi ', 4 * 2 ** 30],
  ])('parses %j as %d', (text, value) => {
    expect(parseQuantity(text)).toBeCloseTo(value, 9);
  });

  it.each(['', 'abc', '1KB', '1K', '1 Gi', 'Gi', '1.2.3', '1Gib', '--1', '1e'])('rejects %j naming it', (text) => {
    expect(() => parseQuantity(text)).toThrow(RangeError);
    expect(() => parseQuantity(text)).toThrow(`"${text}"`);
  });
});

describe('sumQuantities', () => {
  it('sums cpu across nodes, writing fractions in milli and whole numbers plain', () => {
    expect(sumQuantities([{ cpu: '1500m' }, { cpu: '2' }])).toEqual({ cpu: '3500m' });
    expect(sumQuantities([{ cpu: '500m' }, { cpu: '1500m' }])).toEqual({ cpu: '2' });
    expect(sumQuantities([{ cpu: '4' }, { cpu: '4' }, { cpu: '8' }])).toEqual({ cpu: '16' });
  });

  it('writes a whole number of cores plain even when the milli parts add up with rounding error', () => {
    expect(sumQuantities(Array.from({ length: 10 }, () => ({ cpu: '100m' })))).toEqual({ cpu: '1' });
    expect(sumQuantities(Array.from({ length: 3 }, () => ({ cpu: '100m' })))).toEqual({ cpu: '300m' });
  });

  it('sums memory in binary units and writes Ki', () => {
    expect(sumQuantities([{ memory: '1Gi' }, { memory: '512Mi' }])).toEqual({ memory: `${(1.5 * 2 ** 30) / 1024}Ki` });
    expect(sumQuantities([{ memory: '16310688Ki' }, { memory: '1Mi' }])).toEqual({ memory: `${16310688 + 1024}Ki` });
    expect(sumQuantities([{ 'ephemeral-storage': '10Gi' }, { 'hugepages-2Mi': '0' }])).toEqual({
      'ephemeral-storage': `${10 * 1024 * 1024}Ki`,
      'hugepages-2Mi': '0',
    });
  });

  it('writes memory that is not a multiple of 1024 in bytes', () => {
    expect(sumQuantities([{ memory: '1000' }, { memory: '1' }])).toEqual({ memory: '1001' });
    expect(sumQuantities([{ memory: '1M' }])).toEqual({ memory: '1000000' });
  });

  it('sums every resource separately, keys sorted, skipping nodes without a list', () => {
    const total = sumQuantities([
      { pods: '110', memory: '2Gi', cpu: '2' },
      undefined,
      { cpu: '250m', pods: '110' },
      {},
    ]);
    expect(total).toEqual({ cpu: '2250m', memory: `${2 * 1024 * 1024}Ki`, pods: '220' });
    expect(Object.keys(total)).toEqual(['cpu', 'memory', 'pods']);
  });

  it('is empty for no nodes', () => {
    expect(sumQuantities([])).toEqual({});
    expect(sumQuantities([undefined])).toEqual({});
  });

  it('rejects a bad quantity, naming it', () => {
    expect(() => sumQuantities([{ cpu: '2' }, { cpu: 'two' }])).toThrow(RangeError);
    expect(() => sumQuantities([{ cpu: '2' }, { cpu: 'two' }])).toThrow('"two"');
  });
});
