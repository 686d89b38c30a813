// Quality gates and the escalation ladder, end to end: the official openai SDK talks to
// a real tiergate over HTTP, tiergate talks through the real `openai` provider plugin to
// local fake-openai upstreams (one server; the behaviour switches on the upstream model
// name). Scores come from test fixture evaluators (test/fixtures/gate-plugins) whose
// verdict is written in the answer text, so each upstream decides what its model scores.
// This file: the ladder, asymmetric routing costs, three tiers with a fallback outside the
// ladder, and how evaluator scores combine. Beside it: failover.test.ts (inside a tier),
// speculation.test.ts, gate-streaming.test.ts, and ../state/circuit-breaker.test.ts.
// The gateways and helpers they share are in test/support/gates.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { abortedUpstream, reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, brief, client, cost, GATE_PLUGINS, LARGE, SMALL, startTwoTierGateway, sumOfAttempts, type TwoTierGateway } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const rejections = watchUnhandledRejections();

const repoRoot = path.resolve(import.meta.dirname, '../..');

// ---------------------------------------------------------------------------------
// The two-tier gateway (test/support/gates.ts).

describe('gates, ladder, failover and speculation over real HTTP', () => {
  let gateway: TwoTierGateway | undefined;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    gateway = await startTwoTierGateway();
    ({ up, tg, sdk } = gateway);
  });

  after(async () => {
    await gateway?.close();
  });

  describe('the ladder', () => {
    test('the small answer fails the gate → large answers and passes; headers, decision and exact cost say so', async () => {
      const smallUsage = { prompt_tokens: 20, completion_tokens: 5 };
      const largeUsage = { prompt_tokens: 20, completion_tokens: 7 };
      up.script({ 'up-small-a': reply('[q=0.2] a weak answer', smallUsage), 'up-large-l': reply('[q=0.9] a strong answer', largeUsage) });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'What is the capital of France?')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.9] a strong answer');
      assert.equal(data.model, 'large-l');
      assert.deepEqual(data.usage, { ...largeUsage, total_tokens: 27 });
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
      assert.equal(response.headers.get('x-tiergate-tier'), 'large');
      assert.equal(response.headers.get('x-tiergate-quality-score'), '0.900');
      assert.equal(response.headers.get('x-tiergate-speculative'), null);
      assert.equal(up.to('up-small-a').length, 1);
      assert.equal(up.to('up-small-b').length, 0, 'a failed gate is no reason to try the tier-mate: the tier answered');
      assert.equal(up.to('up-large-l').length, 1);

      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'ok');
      assert.equal(line.was_escalated, true);
      assert.equal(line.escalations, 1);
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routed_model, 'small-a');
      assert.equal(line.tier, 'large');
      assert.equal(line.selected_model, 'large-l');
      assert.equal(line.gate, 'passed');
      assert.equal(line.speculated, false);
      assert.equal(line.confidence, 0.8 * 0.5, 'an escalation halves the router confidence');
      assert.equal(line.quality_score, 0.9);
      assert.deepEqual(line.usage, { ...largeUsage, total_tokens: 27 });
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
        { model: 'large-l', role: 'escalation', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
      assert.equal(line.attempts[0].gate?.score, 0.2);
      assert.equal(line.attempts[0].gate?.passed, false);
      assert.equal(line.attempts[0].gate?.threshold, 0.7);
      assert.equal(line.attempts[1].gate?.score, 0.9);
      assert.equal(line.attempts[1].gate?.passed, true);
      assert.equal(line.attempts[0].cost_usd, cost(SMALL, smallUsage));
      assert.equal(line.attempts[1].cost_usd, cost(LARGE, largeUsage));
      assert.equal(line.cost_usd, cost(SMALL, smallUsage) + cost(LARGE, largeUsage), 'both calls are paid for');
    });

    test('an answer that passes at once is served from the routed tier, unescalated', async () => {
      up.script({ 'up-small-a': reply('[q=0.75] good enough', { prompt_tokens: 10, completion_tokens: 3 }) });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'hello')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.75] good enough');
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
      assert.equal(up.to('up-large-l').length, 0);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.was_escalated, false);
      assert.equal(line.confidence, 0.8);
      assert.equal(line.quality_score, 0.75);
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 10, completion_tokens: 3 }));
    });
  });

  describe('asymmetric routing costs', () => {
    test('costs set the gate threshold to the break-even u/(u+o) = 0.8, visible to tiergate validate', async () => {
      const route = tg.gateway.manager.runtime.routes.get('asym');
      assert.equal(route?.costs?.breakEven, 0.8);
      assert.equal(route?.gate?.threshold, 0.8);
      assert.equal(route?.gate?.thresholdSource, 'costs');
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(repoRoot, 'bin/tiergate.js'), 'validate', tg.policyFile], {
        cwd: repoRoot,
        timeout: 20_000,
      });
      const block = stdout.slice(stdout.indexOf('  asym '));
      assert.match(block, /gate answer_score: min ≥ 0\.80 \(from costs\)/);
      assert.match(block, /break-even confidence 0\.80/);
    });

    test('confidence 0.7 to small (below break-even) starts at large, and the reason says why', async () => {
      up.script({ 'up-large-l': reply('[q=0.9] large from the start') });
      const { data, response } = await sdk.chat.completions.create(ask('asym', 'unsure one', { kind: 'unsure' })).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.9] large from the start');
      assert.equal(up.to('up-small-a').length, 0, 'the small tier was never tried');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'large');
      assert.equal(line.routed_model, 'large-l');
      assert.equal(line.escalations, 0);
      assert.match(line.routing_reason, /^rule 1: probably easy/);
      assert.match(line.routing_reason, /confidence 0\.70 is below the break-even 0\.80/);
      assert.match(line.routing_reason, /4:1/);
      assert.match(line.routing_reason, /small → large/);
    });

    test('confidence 0.9 stays small; the 0.8 threshold applies (0.75 escalates, 0.85 passes)', async () => {
      up.script({ 'up-small-a': reply('[q=0.85] small and sure') });
      const first = await sdk.chat.completions.create(ask('asym', 'sure one', { kind: 'sure' })).withResponse();
      assert.equal(first.data.choices[0].message.content, '[q=0.85] small and sure');
      const line = await tg.waitForDecision(first.response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routing_reason, 'rule 2: surely easy');

      up.script({ 'up-small-a': reply('[q=0.75] passes 0.5, not 0.8'), 'up-large-l': reply('[q=0.9] large') });
      const second = await sdk.chat.completions.create(ask('asym', 'sure but weak', { kind: 'sure' })).withResponse();
      assert.equal(second.data.choices[0].message.content, '[q=0.9] large');
      assert.equal(second.response.headers.get('x-tiergate-escalations'), '1');
    });

    test('with speculate configured the bump does not happen: small and large run at once', async () => {
      up.script({ 'up-small-a': reply('[q=0.85] small after all', undefined, { delayMs: 150 }), 'up-large-l': { kind: 'hang' } });
      const { data, response } = await sdk.chat.completions.create(ask('asym-spec', 'unsure, speculating', { kind: 'unsure' })).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.85] small after all');
      assert.equal(response.headers.get('x-tiergate-speculative'), 'true');
      await abortedUpstream(up.to('up-large-l')[0]);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routing_reason, 'rule 1: probably easy');
      assert.equal(line.speculated, true);
    });
  });
});

// ---------------------------------------------------------------------------------
// Gateway 2: three tiers, a fallback outside the ladder, and gates that combine.

describe('three tiers, fallback, and how evaluator scores combine', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  const policy = (baseURL: string) => {
    const model = (name: string, p: number) =>
      `  ${name}: { provider: up, upstream: up-${name}, price: { input_per_mtok: ${p}, output_per_mtok: ${p} }, timeout_ms: 2000 }`;
    const toSmall = `router: { plugin: rules, rules: [ { when: "true", tier: small, confidence: 1, reason: small } ] }`;
    const pair = (combine: string, extraA = '', extraB = '') =>
      `gate: { combine: ${combine}, threshold: 0.5, evaluators: [ { plugin: answer_score, name: a, key: a${extraA} }, { plugin: answer_score, name: b, key: b, when: "kind = 'strict'"${extraB} } ] }`;
    return `version: 1
plugins: { paths: [${JSON.stringify(GATE_PLUGINS)}] }
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
${model('s1', 1)}
${model('m1', 3)}
${model('l1', 9)}
${model('fb', 5)}
tiers:
  - { name: small, models: [s1] }
  - { name: medium, models: [m1] }
  - { name: large, models: [l1] }
features:
  kind: metadata.kind
resilience: { retries: 0, backoff_ms: 10, max_backoff_ms: 100, failure_threshold: 1000 }
routes:
  climb:
    ${toSmall}
    default: small
    fallback: fb
    gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7, max_escalations: 1 }
  climb-top:
    ${toSmall}
    default: small
    gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7, max_escalations: 1 }
  combo-min:
    ${toSmall}
    default: small
    ${pair('min')}
  combo-mean:
    ${toSmall}
    default: small
    ${pair('mean')}
  combo-weighted:
    ${toSmall}
    default: small
    ${pair('weighted', ', weight: 3', ', weight: 1')}
  combo-threshold:
    ${toSmall}
    default: small
    ${pair('mean', '', ', threshold: 0.7')}
analytics:
  decision_log: { file: decisions.jsonl }
`;
  };

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(policy(fake.baseURL));
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  test('max_escalations 1: small fails, medium fails → the fallback model (outside the ladder) answers', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.5] m1'), 'up-fb': reply('[q=0.95] fb') });
    const { data, response } = await sdk.chat.completions.create(ask('climb', 'climb')).withResponse();
    assert.equal(data.choices[0].message.content, '[q=0.95] fb');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(response.headers.get('x-tiergate-model'), 'fb');
    assert.equal(response.headers.get('x-tiergate-tier'), null, 'fb belongs to no tier');
    assert.equal(up.to('up-l1').length, 0, 'max_escalations stops the climb at medium');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.deepEqual(
      line.attempts.map((a) => [a.model, a.role, a.gate?.score]),
      [
        ['s1', 'routed', 0.3],
        ['m1', 'escalation', 0.5],
        ['fb', 'fallback', 0.95],
      ],
    );
    assert.equal(line.escalations, 2);
    assert.equal(line.tier, null);
    assert.equal(line.confidence, 0.25);
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts));
  });

  test('nothing passes → the best-scoring answer, with x-tiergate-gate: failed', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.6] m1 is best'), 'up-fb': reply('[q=0.2] fb') });
    const { data, response } = await sdk.chat.completions.create(ask('climb', 'nothing good')).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, '[q=0.6] m1 is best');
    assert.equal(response.headers.get('x-tiergate-gate'), 'failed');
    assert.equal(response.headers.get('x-tiergate-model'), 'm1');
    assert.equal(response.headers.get('x-tiergate-quality-score'), '0.600');
    assert.equal(response.headers.get('x-tiergate-escalations'), '2');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.gate, 'failed');
    assert.equal(line.quality_score, 0.6);
    assert.equal(line.selected_model, 'm1');
    assert.equal(line.attempts.length, 3);
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts), 'every answer that was produced is paid for');
  });

  test('without a fallback, the route falls back to the top tier after max_escalations', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.4] m1'), 'up-l1': reply('[q=0.8] l1') });
    const { data, response } = await sdk.chat.completions.create(ask('climb-top', 'to the top')).withResponse();
    assert.equal(data.choices[0].message.content, '[q=0.8] l1');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.deepEqual(
      line.attempts.map((a) => [a.model, a.role]),
      [
        ['s1', 'routed'],
        ['m1', 'escalation'],
        ['l1', 'fallback'],
      ],
    );
  });

  const A = 0.9;
  const B = 0.6;
  const both = `[a=${A}] [b=${B}]`;

  async function scored(route: string, kind: string): Promise<DecisionRecord> {
    up.script({ 'up-s1': reply(both), 'up-m1': reply('[a=1] [b=1] medium') });
    const { response } = await sdk.chat.completions.create(ask(route, `combine ${route} ${kind}`, { kind })).withResponse();
    return tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
  }

  test('combine min, with `when` limiting evaluator b to strict requests', async () => {
    const strict = await scored('combo-min', 'strict');
    assert.equal(strict.quality_score, Math.min(A, B));
    assert.deepEqual(
      strict.attempts[0].gate?.evaluators.map((e) => [e.name, e.score, e.skipped ?? false]),
      [
        ['a', A, false],
        ['b', B, false],
      ],
    );
    const lax = await scored('combo-min', 'lax');
    assert.equal(lax.quality_score, A, 'b did not run, so only a counts');
    assert.deepEqual(
      lax.attempts[0].gate?.evaluators.map((e) => [e.name, e.score, e.skipped ?? false]),
      [
        ['a', A, false],
        ['b', null, true],
      ],
    );
  });

  test('combine mean', async () => {
    assert.equal((await scored('combo-mean', 'strict')).quality_score, (A + B) / 2);
    assert.equal((await scored('combo-mean', 'lax')).quality_score, A);
  });

  test('combine weighted (a weight 3, b weight 1)', async () => {
    assert.equal((await scored('combo-weighted', 'strict')).quality_score, (A * 3 + B * 1) / (3 + 1));
    assert.equal((await scored('combo-weighted', 'lax')).quality_score, (A * 3) / 3);
  });

  test('a per-evaluator threshold fails the gate even when the combined score passes', async () => {
    const strict = await scored('combo-threshold', 'strict');
    const first = strict.attempts[0].gate;
    assert.equal(first?.score, (A + B) / 2, 'combined 0.75 is above the gate threshold 0.5…');
    assert.equal(first?.evaluators[1].threshold, 0.7);
    assert.equal(first?.passed, false, '…but b scored 0.6, below its own 0.7');
    assert.equal(strict.selected_model, 'm1');
    assert.equal(strict.escalations, 1);
    assert.equal(strict.quality_score, 1);
    const lax = await scored('combo-threshold', 'lax');
    assert.equal(lax.attempts[0].gate?.passed, true, 'b did not apply, so its threshold did not either');
    assert.equal(lax.selected_model, 's1');
  });
});

describe('after everything', () => {
  test('no promise rejection went unhandled during the file', async () => {
    await rejections.assertNone();
  });
});
