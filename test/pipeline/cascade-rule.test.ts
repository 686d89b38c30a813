// gate.decide: cascade (src/pipeline/gate.ts): the router's confidence and the gate's
// score are one posterior, logit(p) = logit(confidence) + logit(score), held against the
// route's break-even u/(u+o); the router's own break-even step up (src/pipeline/route.ts)
// is skipped. The pipeline is driven directly (test/support/pipeline.ts), then once over
// HTTP with the real openai provider against fake-openai, and the policy check that
// refuses cascade without costs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { execute } from '../../src/pipeline/execute.ts';
import { cascadePosterior } from '../../src/pipeline/gate.ts';
import { startFakeOpenAI } from '../support/fake-openai.ts';
import { startTestGateway } from '../support/gateway.ts';
import { ask, client, GATE_PLUGINS } from '../support/gates.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ScoringEvaluator, testPipeline, type TestPipeline, type TestPipelineOptions } from '../support/pipeline.ts';

/** Three tiers; the rules give a confident (0.95) and an unsure (0.55) decision for small, else no decision (the default, small); costs 4:1 (break-even 0.8). */
const POLICY = `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, default_profile: { capability: 0.5, first_token_ms: 1, tokens_per_second: 1000 } }
models:
  small-a: { provider: sim, upstream: a, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  medium-m: { provider: sim, upstream: m, price: { input_per_mtok: 5, output_per_mtok: 5 } }
  large-l: { provider: sim, upstream: l, price: { input_per_mtok: 20, output_per_mtok: 20 } }
tiers:
  - { name: small, models: [small-a] }
  - { name: medium, models: [medium-m] }
  - { name: large, models: [large-l] }
features:
  kind: metadata.kind
routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "kind = 'sure'", tier: small, confidence: 0.95, reason: surely easy }
        - { when: "kind = 'unsure'", tier: small, confidence: 0.55, reason: maybe easy }
    default: small
    costs: { under_routing: 4, over_routing: 1 }
`;

const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));

const answersByName = { 'small-a': () => 'small-a', 'medium-m': () => 'medium-m', 'large-l': () => 'large-l' };
const scoredBy = (scores: Record<string, number>) => new ScoringEvaluator((text) => scores[text] ?? 0);

async function pipeline(decide: 'threshold' | 'cascade', scores: Record<string, number>, gate: TestPipelineOptions['gate'] = {}) {
  // threshold 0.8: what costs 4:1 make the gate threshold when the policy sets none.
  const made = await testPipeline(POLICY, { behaviours: answersByName, evaluators: [scoredBy(scores)], gate: { threshold: 0.8, decide, ...gate } });
  pipelines.push(made);
  return made;
}

describe('gate.decide: cascade', () => {
  test('the posterior adds log-odds, with prior and score clamped to [0.01, 0.99]', () => {
    assert.ok(Math.abs(cascadePosterior(0.5, 0.6) - 0.6) < 1e-12, 'a neutral prior leaves the score as it is');
    // 0.95 and 0.6: odds 19 × 1.5 = 28.5 → 28.5 / 29.5.
    assert.ok(Math.abs(cascadePosterior(0.95, 0.6) - 28.5 / 29.5) < 1e-12);
    // A certain router (1.0) does not make the gate's 0 count for nothing: both clamp, and cancel.
    assert.ok(Math.abs(cascadePosterior(1, 0) - 0.5) < 1e-12);
  });

  test('a confident router (0.95) and a middling score (0.6) serve the small answer, where threshold mode escalates', async () => {
    const scores = { 'small-a': 0.6, 'medium-m': 0.9 };
    const byThreshold = await pipeline('threshold', scores);
    const thresholdRun = await execute(await byThreshold.context({ metadata: { kind: 'sure' } }));
    assert.equal(thresholdRun.answer.model.spec.name, 'medium-m', '0.6 is below the 0.8 threshold');
    assert.equal(thresholdRun.escalations, 1);

    const byCascade = await pipeline('cascade', scores);
    const ctx = await byCascade.context({ metadata: { kind: 'sure' } });
    const executed = await execute(ctx);
    assert.equal(executed.answer.model.spec.name, 'small-a');
    assert.equal(executed.gate, 'passed');
    assert.equal(executed.escalations, 0);
    assert.equal(executed.qualityScore, 0.6, 'the quality score stays the gate score, not the posterior');
    assert.deepEqual(
      byCascade.calls.map((c) => c.model),
      ['small-a'],
    );
  });

  test('an unsure router (0.55) tries small anyway (no break-even step up), and the same score escalates', async () => {
    const p = await pipeline('cascade', { 'small-a': 0.6, 'medium-m': 0.85 });
    const ctx = await p.context({ metadata: { kind: 'unsure' } });
    assert.equal(ctx.routed.tier, 'small', 'cascade skips the router bump: 0.55 < 0.8 would start at medium');
    assert.doesNotMatch(ctx.routed.reason, /break-even/);
    const executed = await execute(ctx);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a', 'medium-m'],
    );
    assert.equal(executed.answer.model.spec.name, 'medium-m');
    assert.equal(executed.escalations, 1);
    assert.equal(executed.gate, 'passed');
  });

  test('threshold mode keeps the router bump: the same unsure decision starts at medium', async () => {
    const p = await pipeline('threshold', { 'small-a': 0.6, 'medium-m': 0.85 });
    const ctx = await p.context({ metadata: { kind: 'unsure' } });
    assert.equal(ctx.routed.tier, 'medium');
    assert.equal(ctx.routed.prior, undefined, 'no prior is carried outside cascade');
  });

  test('the attempt gate records carry prior, score, posterior and break-even; a climbed-to tier has a neutral prior', async () => {
    const p = await pipeline('cascade', { 'small-a': 0.6, 'medium-m': 0.7, 'large-l': 0.75 });
    const ctx = await p.context({ metadata: { kind: 'unsure' } });
    const executed = await execute(ctx);
    const [small, medium, large] = ctx.attempts.map((a) => a.gate);
    assert.equal(small?.decide, 'cascade');
    assert.equal(small?.prior, 0.55);
    assert.equal(small?.score, 0.6);
    assert.ok(Math.abs((small?.posterior ?? 0) - cascadePosterior(0.55, 0.6)) < 1e-12);
    assert.ok((small?.posterior ?? 1) < 0.8);
    assert.equal(small?.break_even, 0.8);
    assert.equal(small?.passed, false);
    // Medium was climbed to: prior 0.5, so the posterior is the score, 0.7 < 0.8.
    assert.equal(medium?.prior, 0.5);
    assert.ok(Math.abs((medium?.posterior ?? 0) - 0.7) < 1e-12);
    assert.equal(medium?.passed, false);
    // The top tier has nowhere cheaper to be wrong about: the threshold rule judges it.
    assert.equal(large?.decide, undefined);
    assert.equal(large?.posterior, undefined);
    assert.equal(large?.passed, false);
    assert.equal(executed.gate, 'failed');
    assert.equal(executed.answer.model.spec.name, 'large-l', 'the best-scoring answer is served, flagged');
  });

  test('no decision (no rule matched) gives the neutral prior 0.5 to the route default', async () => {
    const p = await pipeline('cascade', { 'small-a': 0.75, 'medium-m': 0.9 });
    const ctx = await p.context({ metadata: { kind: 'other' } });
    assert.equal(ctx.routed.tier, 'small');
    assert.equal(ctx.routed.prior, 0.5);
    const executed = await execute(ctx);
    assert.equal(ctx.attempts[0].gate?.prior, 0.5);
    assert.equal(executed.answer.model.spec.name, 'medium-m', 'posterior 0.75 < 0.8');
  });

  test('decide: cascade without costs is refused, located at the option', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-cascade-'));
    try {
      const file = path.join(dir, 'gateway.yaml');
      writeFileSync(
        file,
        POLICY.replace('    costs: { under_routing: 4, over_routing: 1 }\n', '').replace(
          '    default: small\n',
          '    default: small\n    gate:\n      evaluators: [ { plugin: heuristics } ]\n      decide: cascade\n',
        ),
      );
      let caught: unknown;
      try {
        const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
        await runtime.dispose();
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof PolicyErrors, `expected PolicyErrors, got ${String(caught)}`);
      assert.deepEqual(
        caught.errors.map((e) => ({ code: e.code, path: e.location?.path, line: e.location?.line })),
        [{ code: 'TG_ERR_CONFIG_RULE', path: 'routes.support.gate.decide', line: 24 }],
      );
      assert.match(caught.errors[0].message, /costs/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('over HTTP: the small answer at q=0.6 is served on a 0.95 decision; headers and decision line say why', async () => {
    const fake = await startFakeOpenAI();
    const up = new ScriptedUpstreams(fake);
    const policy = `version: 1
plugins: { paths: [${JSON.stringify(GATE_PLUGINS)}] }
providers:
  up: { plugin: openai, base_url: "${fake.baseURL}", api_key: test-key }
models:
  small-a: { provider: up, upstream: up-small-a, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  large-l: { provider: up, upstream: up-large-l, price: { input_per_mtok: 10, output_per_mtok: 30 } }
tiers:
  - { name: small, models: [small-a] }
  - { name: large, models: [large-l] }
routes:
  cascade:
    router: { plugin: rules, rules: [ { when: "true", tier: small, confidence: 0.95, reason: surely easy } ] }
    default: large
    gate: { evaluators: [ { plugin: answer_score } ], decide: cascade }
    costs: { under_routing: 4, over_routing: 1 }
analytics:
  decision_log: { file: decisions.jsonl }
`;
    const tg = await startTestGateway(policy).catch(async (err: unknown) => {
      await fake.close();
      throw err;
    });
    try {
      up.script({ 'up-small-a': reply('[q=0.6] a fair answer'), 'up-large-l': reply('[q=0.9] a strong answer') });
      const { data, response } = await client(tg).chat.completions.create(ask('cascade', 'What is 2 + 2?')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.6] a fair answer');
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      assert.equal(response.headers.get('x-tiergate-quality-score'), '0.600');
      assert.equal(up.to('up-large-l').length, 0);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      const gate = line.attempts[0].gate;
      assert.equal(gate?.decide, 'cascade');
      assert.equal(gate?.prior, 0.95);
      assert.equal(gate?.score, 0.6);
      assert.equal(gate?.break_even, 0.8);
      assert.ok(Math.abs((gate?.posterior ?? 0) - 28.5 / 29.5) < 1e-9, String(gate?.posterior));
    } finally {
      await tg.close();
      await fake.close();
    }
  });
});
