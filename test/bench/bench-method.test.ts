// The benchmark's two rules for what it measures (scripts/bench): when a target has
// warmed up, and which round sets the medians are of. Both decide the report's figures,
// so both are pinned here; the load runs themselves are the benchmark's, not a test's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasSettled } from '../../scripts/bench/warm.ts';
import { leastDisturbed, mediansOver, setDisturbance } from '../../scripts/bench/results.ts';

const settings = { minPasses: 3, patience: 2, tolerance: 0.05 };

test('a warm-up settles once `patience` passes in a row got no cheaper than 5 % below the lowest so far', () => {
  // Still falling: every pass a new low by more than 5 % in some cell.
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [500, 300],
        [400, 250],
        [350, 230],
      ],
      settings,
    ),
    false,
  );
  // Flat, with the noise going up only: settled after two such passes.
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [400, 250],
        [420, 260],
        [395, 300],
      ],
      settings,
    ),
    true,
  );
  // One flat pass is not enough with patience 2.
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [400, 250],
        [420, 260],
      ],
      settings,
    ),
    false,
  );
  // A new low in one cell only resets it.
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [400, 250],
        [420, 260],
        [410, 200],
      ],
      settings,
    ),
    false,
  );
  // Within 5 % below the lowest still counts as flat.
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [400, 250],
        [385, 245],
        [390, 240],
      ],
      settings,
    ),
    true,
  );
  // Never before minPasses, and a NaN (no answers) never settles.
  assert.equal(
    hasSettled(
      [
        [400, 250],
        [400, 250],
      ],
      { ...settings, patience: 1 },
    ),
    false,
  );
  assert.equal(
    hasSettled(
      [
        [1000, 800],
        [Number.NaN, 250],
        [Number.NaN, 250],
        [Number.NaN, 250],
      ],
      settings,
    ),
    false,
  );
});

const run = (foreign: number, stolen: number, p50: number) => ({ foreign_cpu: foreign, stolen_cpu: stolen, p50_ms: p50 });

test('the medians are of the least disturbed round sets, chosen by disturbance and never by result', () => {
  // Set 2 is the most disturbed (its proxy run had 0.6 cores stolen) though its figures are the best.
  const rounds = {
    direct: [run(0.01, 0.02, 0.13), run(0.02, 0.1, 0.12), run(0.0, 0.6, 0.1), run(0.0, 0.05, 0.14)],
    proxy: [run(0.0, 0.0, 0.42), run(0.0, 0.12, 0.41), run(0.0, 0.6, 0.3), run(0.1, 0.0, 0.43)],
    tiergate: [run(0.0, 0.03, 0.5), run(0.05, 0.2, 0.55), run(0.0, 0.1, 0.4), run(0.0, 0.0, 0.52)],
  };
  assert.equal(setDisturbance(rounds, 2), 0.6);
  assert.equal(setDisturbance(rounds, 1).toFixed(2), '0.25', 'a set is as disturbed as its most disturbed run');
  const used = leastDisturbed(rounds, 3);
  assert.deepEqual(used, [0, 1, 3], 'in the order they ran');
  const medians = mediansOver(rounds, used);
  assert.equal(medians.tiergate.p50_ms, 0.52);
  assert.equal(medians.direct.p50_ms, 0.13);
  // Ties go to the earlier set.
  const even = { direct: [run(0, 0, 1), run(0, 0, 2)], proxy: [run(0, 0, 1), run(0, 0, 2)], tiergate: [run(0, 0, 1), run(0, 0, 2)] };
  assert.deepEqual(leastDisturbed(even, 1), [0]);
});
