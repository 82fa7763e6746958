import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/tunnel/duration.js';

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['1m30s', 90_000],
    ['2h45m10s500ms', 2 * 3_600_000 + 45 * 60_000 + 10_000 + 500],
    ['1.5h', 5_400_000],
    ['0.5s', 500],
    ['0', 0],
    ['0s', 0],
    ['  30s  ', 30_000],
  ])('parses %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('tells minutes from milliseconds', () => {
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('5ms')).toBe(5);
    expect(parseDuration('5m5ms')).toBe(300_005);
  });

  it.each(['30', 'abc', '5x', '', '   ', '-5s', '5s junk', 's', '1h 30m', '5sec', '1d', '1.s'])(
    'rejects %j with an error naming the text',
    (text) => {
      expect(() => parseDuration(text)).toThrow(RangeError);
      expect(() => parseDuration(text)).toThrow(`"${text}"`);
    },
  );

  it('names the flag it was parsing', () => {
    expect(() => parseDuration('5x', '--cluster-lease-duration')).toThrow(/--cluster-lease-duration/);
  });

  it('round-trips whole units through formatDuration', () => {
    for (const text of ['250ms', '30s', '90s', '5m', '90m', '3h']) {
      expect(formatDuration(parseDuration(text))).toBe(text);
    }
  });
});

describe('formatDuration', () => {
  it('picks the largest readable unit', () => {
    expect(formatDuration(999)).toBe('999ms');
    expect(formatDuration(1_000)).toBe('1s');
    expect(formatDuration(119_999)).toBe('119s');
    expect(formatDuration(120_000)).toBe('2m');
    expect(formatDuration(7_200_000)).toBe('2h');
    expect(formatDuration(48 * 3_600_000)).toBe('2d');
  });
});
