// The ladder (src/pipeline/execute.ts), without HTTP: the gate judges each answer; a
// failed gate or a tier that fails outright climbs one tier, at most max_escalations
// times, then the route's fallback; when nothing passes, the best-scoring answer is
// served and flagged.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { UpstreamError } from '../../src/plugin-contract/plugin-api.ts';
import { execute } from '../../src/pipeline/execute.ts';
import { ScoringEvaluator, ladderPolicy, testPipeline, type TestPipeline, type TestPipelineOptions } from '../support/pipeline.ts';

const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));
async function pipeline(options: TestPipelineOptions) {
  const made = await testPipeline(ladderPolicy(), options);
  pipelines.push(made);
  return made;
}
/** Each model answers its own name; the gate scores an answer by the model that gave it. */
const answersByName = { 'small-a': () => 'small-a', 'small-b': () => 'small-b', 'medium-m': () => 'medium-m', 'large-l': () => 'large-l' };
const scoredBy = (scores: Record<string, number>) => new ScoringEvaluator((text) => scores[text] ?? 0);

describe('the ladder', () => {
  test('without a gate the routed tier answers: no escalation, gate "none"', async () => {
    const p = await pipeline({ behaviours: answersByName });
    const executed = await execute(await p.context({ metadata: { tier: 'small' } }));
    assert.equal(executed.answer.model.spec.name, 'small-a');
    assert.equal(executed.gate, 'none');
    assert.equal(executed.escalations, 0);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a'],
    );
  });

  test('a failed gate climbs one tier; the answer that passes is served', async () => {
    const p = await pipeline({ behaviours: answersByName, evaluators: [scoredBy({ 'small-a': 0.2, 'medium-m': 0.9 })] });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const executed = await execute(ctx);
    assert.equal(executed.answer.model.spec.name, 'medium-m');
    assert.equal(executed.gate, 'passed');
    assert.equal(executed.escalations, 1);
    assert.equal(executed.qualityScore, 0.9);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'medium-m'],
    );
    assert.deepEqual(
      ctx.attempts.map((a) => [a.model, a.role, a.gate?.passed]),
      [
        ['small-a', 'routed', false],
        ['medium-m', 'escalation', true],
      ],
    );
    // Both calls are paid for.
    assert.ok(Math.abs(executed.totalCostUsd - (15 * 1 + 15 * 5) / 1e6) < 1e-12, String(executed.totalCostUsd));
  });

  test('max_escalations bounds the climb; then the fallback; nothing passing serves the best answer, flagged "failed"', async () => {
    const p = await pipeline({
      behaviours: answersByName,
      evaluators: [scoredBy({ 'small-a': 0.3, 'medium-m': 0.4, 'large-l': 0.35 })],
      gate: { threshold: 0.9, maxEscalations: 1 },
    });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const executed = await execute(ctx);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'medium-m', 'large-l'],
    );
    assert.deepEqual(
      ctx.attempts.map((a) => a.role),
      ['routed', 'escalation', 'fallback'],
    );
    assert.equal(executed.escalations, 2);
    assert.equal(executed.gate, 'failed');
    assert.equal(executed.answer.model.spec.name, 'medium-m');
    assert.equal(executed.qualityScore, 0.4);
  });

  test('a tier whose every model fails climbs too, without a gate score for it', async () => {
    const fail = () => {
      throw new UpstreamError('http', 'down', { status: 503 });
    };
    const p = await pipeline({ behaviours: { ...answersByName, 'small-a': fail, 'small-b': fail }, evaluators: [scoredBy({ 'medium-m': 1 })] });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const executed = await execute(ctx);
    assert.equal(executed.answer.model.spec.name, 'medium-m');
    assert.equal(executed.escalations, 1);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'small-a', 'small-b', 'small-b', 'medium-m'],
    );
    assert.deepEqual(
      ctx.attempts.map((a) => [a.model, a.outcome, a.gate === undefined]),
      [
        ['small-a', 'failed', true],
        ['small-b', 'failed', true],
        ['medium-m', 'ok', false],
      ],
    );
  });

  test("the route default (the top tier) is the ladder's top: no climb, no fallback call", async () => {
    const p = await pipeline({ behaviours: answersByName, evaluators: [scoredBy({})], gate: { threshold: 0.9 } });
    const ctx = await p.context({});
    const executed = await execute(ctx);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['large-l'],
    );
    assert.equal(executed.gate, 'failed');
    assert.equal(executed.escalations, 0);
  });
});
