import { type Row, rowPassed } from './world.js';

// The table `npm run chaos` prints (and chaos/README.md records): Markdown,
// so the same text reads in a terminal and in the README.

const headers = ['scenario', 'faults injected', 'converged in', 'acked revisions lost', 'applied twice', 'leaked streams', 'leaked processes', ''];

function seconds(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'never';
}

function count(n: number): string {
  return Number.isFinite(n) ? String(n) : '?';
}

/** Fault lists of repeating scenarios are long: the first few, then how many more. */
function faults(list: readonly string[]): string {
  if (list.length <= 3) return list.join('; ');
  return `${list.slice(0, 3).join('; ')}; +${list.length - 3} more`;
}

export function renderTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [r.scenario, faults(r.faults), r.converged ? seconds(r.convergeMs) : 'never', count(r.ackedLost), count(r.appliedTwice), count(r.leakedStreams), count(r.leakedProcesses), rowPassed(r) ? 'ok' : 'FAIL']);
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** What failed, row by row, for the lines under the table. */
export function renderProblems(rows: readonly Row[]): string {
  return rows
    .filter((r) => !rowPassed(r))
    .map((r) => `${r.scenario}: ${r.problems.join('; ') || 'an invariant is off (see the row)'}`)
    .join('\n');
}
