// For tests that call a plugin directly: a PluginContext (expressions compiled for real,
// log lines kept for assertions) and helpers for provider calls.
import assert from 'node:assert/strict';
import { isUpstreamError, type ChatChunk, type UpstreamError } from '../../src/plugin-contract/plugin-api.ts';

// The context itself is the SDK's, the one a team's own plugin tests use.
export { testPluginContext, type LogLine } from 'tiergate/testing';

/** Every chunk of a provider stream. */
export async function collect(iterable: AsyncIterable<ChatChunk>): Promise<ChatChunk[]> {
  const chunks: ChatChunk[] = [];
  for await (const chunk of iterable) chunks.push(chunk);
  return chunks;
}

/** Asserts the promise rejects with an UpstreamError of this kind and returns it. */
export async function upstreamFailure(promise: Promise<unknown>, failure: UpstreamError['failure']): Promise<UpstreamError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.ok(isUpstreamError(caught), `expected an UpstreamError, got ${String(caught)}`);
  assert.equal(caught.failure, failure, `failure of: ${caught.message}`);
  return caught;
}
