import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshSeed } from '../../chaos/rng.js';
import { runScenario } from '../../chaos/run.js';
import { scenarios } from '../../chaos/scenarios.js';
import { renderTable } from '../../chaos/table.js';
import { type Row, scales, World } from '../../chaos/world.js';

// The chaos suite (chaos/) at small scale: every scenario once, on real
// processes (a child cluster, toxiproxy, the hawser hub and agent from
// bin/hawser.js). Each row must converge with nothing acked lost, nothing
// applied twice, and no stream or process left behind. The seed is printed;
// HAWSER_CHAOS_SEED=N replays one, as does `npm run chaos -- --scale small --seed N`.

const seed = process.env['HAWSER_CHAOS_SEED'] ? Number(process.env['HAWSER_CHAOS_SEED']) : freshSeed();

describe(`chaos suite, small scale (seed ${seed})`, () => {
  let world: World;
  const rows: Row[] = [];

  beforeAll(async () => {
    console.log(`chaos seed ${seed}: replay with HAWSER_CHAOS_SEED=${seed}`);
    world = await World.open();
  });

  afterAll(async () => {
    if (rows.length > 0) console.log(`chaos seed ${seed}\n${renderTable(rows)}`);
    await world?.close();
  });

  for (const scenario of scenarios) {
    it(`${scenario.id}: converges, 0 acked lost, 0 applied twice, 0 leaked`, async () => {
      const row = await runScenario(world, scenario, seed, scales.small);
      rows.push(row);
      expect({ scenario: row.scenario, seed, problems: row.problems }).toEqual({ scenario: scenario.id, seed, problems: [] });
      expect(row.converged).toBe(true);
      expect(row.ackedLost).toBe(0);
      expect(row.appliedTwice).toBe(0);
      expect(row.leakedStreams).toBe(0);
      expect(row.leakedProcesses).toBe(0);
    }, 240_000);
  }
});
