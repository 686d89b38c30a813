// For test/analysis/metrics-by-hand.test.ts and metrics.test.ts: numbers compared
// within a tolerance, the failure naming what was compared.
import assert from 'node:assert/strict';

export function close(actual: number, expected: number, tolerance = 1e-12, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what} expected ${expected}, got ${actual} (±${tolerance})`);
}
