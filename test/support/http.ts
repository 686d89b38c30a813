// Small helpers for tests that talk to the gateway with the official openai SDK: the
// error a call rejects with, and a stream read to the end.
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
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

/** Reads a streamed answer to the end: its text, usage chunks, last finish_reason, and the error that ended it, if any. */
export async function drain(
  stream: AsyncIterable<OpenAI.ChatCompletionChunk>,
): Promise<{ text: string; usages: unknown[]; finish: string | null; error: unknown }> {
  let text = '';
  let finish: string | null = null;
  const usages: unknown[] = [];
  let error: unknown;
  try {
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usages.push(chunk.usage);
    }
  } catch (err) {
    error = err;
  }
  return { text, usages, finish, error };
}
