// One seedable PRNG for everything that must be repeatable: exploration in the bandit,
// fold splits in training, the random baseline in eval, the example's ticket mix.

/** mulberry32 (public domain): small and fast; floats in [0, 1); the same seed, the same sequence. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
