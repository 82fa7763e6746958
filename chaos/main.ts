import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { freshSeed } from './rng.js';
import { runScenarios } from './run.js';
import { scenarios } from './scenarios.js';
import { renderProblems, renderTable } from './table.js';
import { rowPassed, scales, World } from './world.js';

// npm run chaos [-- --scale small|large] [--seed N] [--only id,id]
//
// Starts a real child cluster (etcd + kube-apiserver) and a toxiproxy, runs
// every scenario (each with its own hub and agent from bin/hawser.js) and
// prints the table. Exits 1 when a row fails; the seed replays it.

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: 'large' },
    seed: { type: 'string' },
    only: { type: 'string' },
  },
});

const scaleName = values.scale;
if (scaleName !== 'small' && scaleName !== 'large') throw new Error(`--scale must be small or large, got "${scaleName}"`);
const scale = scales[scaleName];
const seed = values.seed === undefined ? freshSeed() : Number(values.seed);
if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got "${values.seed}"`);
const only = values.only?.split(',').map((s) => s.trim());
const unknown = only?.filter((id) => !scenarios.some((s) => s.id === id)) ?? [];
if (unknown.length > 0) throw new Error(`--only: no scenario ${unknown.join(', ')}; there are ${scenarios.map((s) => s.id).join(', ')}`);
const list = only ? scenarios.filter((s) => only.includes(s.id)) : scenarios;

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

console.log(`chaos: seed ${seed}, scale ${scale.name}, ${list.length} scenarios, commit ${commit()}`);
const started = performance.now();
const world = await World.open();
let rows;
try {
  rows = await runScenarios(world, list, seed, scale);
} finally {
  await world.close();
}
console.log(`\nchaos: seed ${seed}, scale ${scale.name}, commit ${commit()}, ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
console.log(renderTable(rows));
const problems = renderProblems(rows);
if (problems) console.log(`\n${problems}\n\nreplay: npm run chaos -- --scale ${scale.name} --seed ${seed} --only ${rows.filter((r) => !rowPassed(r)).map((r) => r.scenario).join(',')}`);
process.exitCode = rows.every(rowPassed) ? 0 : 1;
