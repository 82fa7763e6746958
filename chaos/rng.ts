// Seeded randomness for the scenarios: one seed prints with the table, and
// each scenario draws from its own stream derived from it, so a failing row
// replays alone with `npm run chaos -- --seed N --only ID`.

import { seeded } from '../src/testkit/index.js';

export type Random = () => number;

/** The stream of one scenario: the seed mixed with its id (FNV-1a), so adding a scenario changes no other's draws. */
export function scenarioRandom(seed: number, id: string): Random {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return seeded(h >>> 0);
}

/** Uniform in [min, max). */
export function between(random: Random, min: number, max: number): number {
  return min + random() * (max - min);
}

/** A fresh seed for a run that was given none (printed, so it can be replayed). */
export function freshSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
