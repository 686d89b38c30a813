// Waiting in tests: a pause, and polling until something holds. Every wait is bounded
// and fails the test naming what it waited for, so a broken gateway fails instead of
// hanging the run.
import assert from 'node:assert/strict';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 5 ms; fails with `what` after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Polls until `probe` returns something truthy and returns it; a probe that throws is
 * tried again (a server still starting). Fails with `what` and the last value or error
 * after `timeoutMs`.
 */
export async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 5000, intervalMs = 15): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline)
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(intervalMs);
  }
}
