// Speculation (src/pipeline/execute.ts): when the router is unsure, the routed tier and
// the next one are called at once; the gate decides, and the loser's call is aborted.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { execute } from '../../src/pipeline/execute.ts';
import { ScoringEvaluator, ladderPolicy, slowly, testPipeline, type SeenCall, type TestPipeline, type TestPipelineOptions } from '../support/pipeline.ts';

const speculating = `    gate: { evaluators: [ { plugin: heuristics } ] }
    speculate: { when: "decision.confidence < 0.6" }
`;
const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));
async function pipeline(options: TestPipelineOptions) {
  const made = await testPipeline(ladderPolicy(speculating), options);
  pipelines.push(made);
  return made;
}
const scoredBy = (scores: Record<string, number>) => new ScoringEvaluator((text) => scores[text] ?? 0);

describe('speculation: the cheap tier and the next one in parallel', () => {
  test("the cheap answer passes: it is served, and the strong call's signal is aborted", async () => {
    const p = await pipeline({
      behaviours: {
        'small-a': () => 'small-a',
        'medium-m': async (call) => {
          await slowly(10_000, call.signal);
          return 'medium-m';
        },
      },
      evaluators: [scoredBy({ 'small-a': 0.9 })],
    });
    const ctx = await p.context({ metadata: { tier: 'unsure' } });
    const executed = await execute(ctx);
    assert.equal(executed.speculated, true);
    assert.equal(executed.answer.model.spec.name, 'small-a');
    assert.equal(executed.escalations, 0);
    assert.deepEqual(p.calls.map((c) => c.model).sort(), ['medium-m', 'small-a']);
    const strong = p.calls.find((c) => c.model === 'medium-m') as SeenCall;
    const cheap = p.calls.find((c) => c.model === 'small-a') as SeenCall;
    assert.equal(strong.signal.aborted, true, 'the loser is aborted');
    assert.equal(cheap.signal.aborted, false);
    const lost = ctx.attempts.find((a) => a.role === 'speculative');
    assert.equal(lost?.outcome, 'aborted');
    // The aborted call is billed for its prompt.
    assert.ok((lost?.cost_usd ?? 0) > 0 && lost?.usage_estimated === true);
  });

  test('the cheap answer fails its gate: the strong answer, already under way, is served as one escalation', async () => {
    let callsWhenCheapAnswered = 0;
    const p = await pipeline({
      behaviours: {
        'small-a': async (call) => {
          await slowly(30, call.signal);
          callsWhenCheapAnswered = p.calls.length;
          return 'small-a';
        },
        'medium-m': () => 'medium-m',
      },
      evaluators: [scoredBy({ 'small-a': 0.1, 'medium-m': 0.8 })],
    });
    const ctx = await p.context({ metadata: { tier: 'unsure' } });
    const executed = await execute(ctx);
    assert.equal(callsWhenCheapAnswered, 2, 'both tiers were called before the cheap one answered');
    assert.equal(executed.answer.model.spec.name, 'medium-m');
    assert.equal(executed.speculated, true);
    assert.equal(executed.escalations, 1);
    assert.equal(executed.gate, 'passed');
    assert.ok(p.calls.every((c) => !c.signal.aborted));
    assert.deepEqual(ctx.attempts.map((a) => [a.model, a.role]).sort(), [
      ['medium-m', 'speculative'],
      ['small-a', 'routed'],
    ]);
  });

  test('a confident decision does not speculate: only the routed tier is called', async () => {
    const p = await pipeline({ behaviours: { 'small-a': () => 'small-a' }, evaluators: [scoredBy({ 'small-a': 0.9 })] });
    const executed = await execute(await p.context({ metadata: { tier: 'small' } }));
    assert.equal(executed.speculated, false);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a'],
    );
  });
});
