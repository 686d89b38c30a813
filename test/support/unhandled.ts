// Promise rejections nobody handled, for files whose gateways abort, fail over and cancel
// calls: a rejection dropped on the floor there is a bug even when every answer is right.
import assert from 'node:assert/strict';

/**
 * Starts collecting unhandled rejections (call it at the top of the file). `assertNone`
 * lets late rejections surface for 50 ms, stops collecting and fails if there was any:
 * run it as the file's last test, or from a top-level `after` hook.
 */
export function watchUnhandledRejections(): { assertNone(): Promise<void> } {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  return {
    async assertNone() {
      await new Promise((resolve) => setTimeout(resolve, 50));
      process.off('unhandledRejection', onUnhandled);
      assert.deepEqual(unhandled.map(String), []);
    },
  };
}
