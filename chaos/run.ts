import { type Scenario } from './scenarios.js';
import { type Row, type Scale, ScenarioRun, type World } from './world.js';

// Runs scenarios one after another in one world; a scenario that throws is a
// failed row (with what it threw), never the end of the run.

export async function runScenario(world: World, scenario: Scenario, seed: number, scale: Scale): Promise<Row> {
  const run = new ScenarioRun(world, scenario.id, seed, scale);
  const started = performance.now();
  run.log(`start (seed ${seed}, scale ${scale.name})`);
  try {
    await run.start(scenario.options);
    await scenario.run(run);
  } catch (err) {
    run.problems.push(`threw: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    const row = await run.finish();
    run.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${row.problems.length === 0 ? 'ok' : row.problems.join('; ')}`);
    return row;
  } catch (err) {
    await run.abort();
    return {
      scenario: scenario.id,
      faults: run.faults,
      converged: false,
      convergeMs: Number.NaN,
      ackedLost: Number.NaN,
      appliedTwice: Number.NaN,
      leakedStreams: Number.NaN,
      leakedProcesses: Number.NaN,
      problems: [...run.problems, `finish threw: ${(err as Error).message.split('\n')[0]}`],
    };
  }
}

export async function runScenarios(world: World, list: readonly Scenario[], seed: number, scale: Scale): Promise<Row[]> {
  const rows: Row[] = [];
  for (const s of list) rows.push(await runScenario(world, s, seed, scale));
  return rows;
}
