// In-tier failover (src/pipeline/failover.ts), without HTTP: retries with backoff, the
// next model of the tier, cooldowns skipped, a rejected request not retried, and a
// stream that fails over before its first chunk.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { TiergateError } from '../../src/common/errors.ts';
import { UpstreamError } from '../../src/plugin-contract/plugin-api.ts';
import { modelsFrom } from '../../src/policy/targets.ts';
import { TierFailure, allFailed, callModels } from '../../src/pipeline/failover.ts';
import { openStream } from '../../src/pipeline/stream.ts';
import { ladderPolicy, testPipeline, type TestPipeline, type TestPipelineOptions } from '../support/pipeline.ts';

const serverError = () => {
  throw new UpstreamError('http', 'upstream answered 500', { status: 500 });
};
const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));
async function pipeline(behaviours: TestPipelineOptions['behaviours']) {
  const made = await testPipeline(ladderPolicy(), { behaviours });
  pipelines.push(made);
  return made;
}

describe('failover inside a tier', () => {
  test('a retryable failure is retried (resilience.retries), then the next model of the tier answers', async () => {
    const p = await pipeline({ 'small-a': serverError, 'small-b': () => 'from b' });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const answer = await callModels(ctx, modelsFrom(p.runtime, ctx.routed.model), 'routed');
    assert.equal(answer.model.spec.name, 'small-b');
    assert.equal(answer.result.choices[0].message.content, 'from b');
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'small-a', 'small-b'],
    );
    assert.deepEqual(
      ctx.attempts.map((a) => [a.model, a.outcome, a.retries, a.error_code]),
      [
        ['small-a', 'failed', 1, 'TG_ERR_UPSTREAM'],
        ['small-b', 'ok', 0, undefined],
      ],
    );
    assert.equal(ctx.attempts[1].cost_usd, (10 * 1 + 5 * 1) / 1e6);
  });

  test('a request the upstream rejects (400) is not retried nor sent to another model', async () => {
    const p = await pipeline({
      'small-a': () => {
        throw new UpstreamError('http', 'bad request', { status: 400 });
      },
    });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    await assert.rejects(
      callModels(ctx, modelsFrom(p.runtime, ctx.routed.model), 'routed'),
      (err: unknown) => err instanceof TiergateError && err.code === 'TG_ERR_UPSTREAM_REJECTED',
    );
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a'],
    );
  });

  test('when every model fails: TierFailure, and the 502 lists what was tried', async () => {
    const p = await pipeline({ 'small-a': serverError, 'small-b': serverError });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const failure = await callModels(ctx, modelsFrom(p.runtime, ctx.routed.model), 'routed').then(
      () => assert.fail('no model answered'),
      (err: unknown) => err,
    );
    assert.ok(failure instanceof TierFailure);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'small-a', 'small-b', 'small-b'],
    );
    const error = allFailed(ctx.attempts, failure.lastError);
    assert.equal(error.code, 'TG_ERR_ALL_FAILED');
    assert.match(error.message, /small-a \(TG_ERR_UPSTREAM, 1 retry\); small-b \(TG_ERR_UPSTREAM, 1 retry\)/);
  });

  test('a model in cooldown is skipped, and recorded as skipped', async () => {
    const p = await pipeline({});
    p.runtime.health.failure('small-a', { ...p.runtime.resilience, failure_threshold: 1 });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const answer = await callModels(ctx, modelsFrom(p.runtime, ctx.routed.model), 'routed');
    assert.equal(answer.model.spec.name, 'small-b');
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-b'],
    );
    assert.deepEqual(
      ctx.attempts.map((a) => [a.model, a.outcome]),
      [
        ['small-a', 'skipped_cooldown'],
        ['small-b', 'ok'],
      ],
    );
  });

  test('a stream fails over before its first chunk: nothing of the failed model reaches the client', async () => {
    const p = await pipeline({ 'small-a': serverError, 'small-b': () => 'streamed by b' });
    const ctx = await p.context({ metadata: { tier: 'small' }, stream: true });
    const opened = await openStream(ctx, modelsFrom(p.runtime, ctx.routed.model));
    try {
      assert.equal(opened.model.spec.name, 'small-b');
      assert.equal(opened.first.choices[0].delta.content, 'streamed');
      assert.deepEqual(
        p.calls.map((c) => [c.model, c.stream]),
        [
          ['small-a', true],
          ['small-a', true],
          ['small-b', true],
        ],
      );
      assert.deepEqual(
        ctx.attempts.map((a) => [a.model, a.role, a.outcome]),
        [
          ['small-a', 'routed', 'failed'],
          ['small-b', 'routed', 'ok'],
        ],
      );
    } finally {
      opened.deadline.clear();
    }
  });
});
