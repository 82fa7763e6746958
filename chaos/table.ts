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

/**
 * Fault lists of repeating scenarios are long: faults that differ only in
 * their numbers go together, as "4× SIGKILL agent +161–1481ms".
 */
export function summarizeFaults(list: readonly string[]): string {
  const groups = new Map<string, number[][]>();
  for (const fault of list) {
    const template = fault.replace(/\d+/g, '#');
    const numbers = [...fault.matchAll(/\d+/g)].map((m) => Number(m[0]));
    groups.set(template, [...(groups.get(template) ?? []), numbers]);
  }
  return [...groups]
    .map(([template, all]) => {
      if (all.length === 1) return list.find((f) => f.replace(/\d+/g, '#') === template)!;
      let i = 0;
      const text = template.replace(/#/g, () => {
        const values = all.map((n) => n[i]!);
        i++;
        const [min, max] = [Math.min(...values), Math.max(...values)];
        return min === max ? String(min) : `${min}–${max}`;
      });
      return `${all.length}× ${text}`;
    })
    .join('; ');
}

export function renderTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [r.scenario, summarizeFaults(r.faults), r.converged ? seconds(r.convergeMs) : 'never', count(r.ackedLost), count(r.appliedTwice), count(r.leakedStreams), count(r.leakedProcesses), rowPassed(r) ? 'ok' : 'FAIL']);
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
