// Small helpers for tests that talk to the gateway with the official openai SDK.
import assert from 'node:assert/strict';
import { APIError } from 'openai';

/** The APIError a call rejects with; fails the test when it does not reject. */
export async function apiError(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof APIError, `expected an APIError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the request to fail');
}
