// Seeded randomness for tests, benchmarks and the chaos suite: a run replays
// exactly from its seed.

/** Deterministic pseudo-random values in [0, 1) (mulberry32: small, fast, good enough to pick data and fault times). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
