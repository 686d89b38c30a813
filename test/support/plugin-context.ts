// For tests that call a plugin directly: a PluginContext (expressions compiled for real,
// log lines kept for assertions) and helpers for provider calls.
import assert from 'node:assert/strict';
import { compileExpression } from '../../src/expressions/compile.ts';
import { isUpstreamError, type ChatChunk, type PluginContext, type PolicyView, type UpstreamError } from '../../src/plugin-sdk/plugin-api.ts';

export interface LogLine {
  level: string;
  message: string;
  meta?: Record<string, unknown>;
}

export function testPluginContext(options: { at: string; logs?: LogLine[]; policy?: PolicyView; callModel?: PluginContext['callModel'] }): PluginContext {
  const logs = options.logs ?? [];
  const record = (level: string) => (message: string, meta?: Record<string, unknown>) => void logs.push({ level, message, meta });
  return {
    at: options.at,
    baseDir: process.cwd(),
    policy: options.policy ?? { models: new Map(), tiers: [], featureNames: [] },
    logger: { error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') },
    expression(source) {
      const compiled = compileExpression(source);
      if ('problem' in compiled) throw new Error(compiled.problem.message);
      return compiled.expression;
    },
    optionError: (path, message) => new Error(`${path.join('.')}: ${message}`),
    callModel:
      options.callModel ??
      (async () => {
        throw new Error('this test gives the plugin no models to call');
      }),
  };
}

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
