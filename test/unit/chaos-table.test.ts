import { describe, expect, it } from 'vitest';
import { scenarioRandom } from '../../chaos/rng.js';
import { renderTable, summarizeFaults } from '../../chaos/table.js';

describe('chaos table', () => {
  it('faults that differ only in numbers go together with their ranges', () => {
    expect(summarizeFaults(['SIGKILL agent +1481ms', 'SIGKILL agent +880ms', 'SIGKILL agent +161ms'])).toBe('3× SIGKILL agent +161–1481ms');
    expect(summarizeFaults(['latency 300±150ms both ways'])).toBe('latency 300±150ms both ways');
    expect(summarizeFaults(['cut 900ms', 'reset_peer 12ms', 'cut 900ms'])).toBe('2× cut 900ms; reset_peer 12ms');
  });

  it('a row that misses an invariant reads FAIL, one that never converged reads never', () => {
    const base = { scenario: 'x', faults: ['cut 1ms'], converged: true, convergeMs: 1500, ackedLost: 0, appliedTwice: 0, leakedStreams: 0, leakedProcesses: 0, problems: [] };
    const text = renderTable([base, { ...base, scenario: 'y', ackedLost: 1 }, { ...base, scenario: 'z', converged: false, convergeMs: Number.NaN, problems: ['timed out'] }]);
    expect(text).toMatch(/^\| x +\| cut 1ms +\| 1\.5 s +\| 0 .*\| ok +\|$/m);
    expect(text).toMatch(/^\| y .*\| 1 +\| 0 .*\| FAIL \|$/m);
    expect(text).toMatch(/^\| z .*\| never .*\| FAIL \|$/m);
  });

  it('a scenario draws the same fault times from the same seed, and others from another', () => {
    const a = scenarioRandom(7, 'agent-kill');
    const b = scenarioRandom(7, 'agent-kill');
    const draws = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(draws);
    const c = scenarioRandom(8, 'agent-kill');
    expect([c(), c(), c()]).not.toEqual(draws);
    const d = scenarioRandom(7, 'hub-kill');
    expect([d(), d(), d()]).not.toEqual(draws);
  });
});
