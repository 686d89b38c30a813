// The learned gate over real HTTP: the official openai SDK talks to a real tiergate, which
// talks through the real `openai` provider plugin to a local fake-openai server scripted per
// upstream model. The gate's model is trained in the test on word problems whose answers
// are good exactly when their arithmetic checks out, and written beside the policy.
// - threshold rule: a cheap answer whose arithmetic is wrong climbs to the strong tier;
// - cascade rule: the same cheap answer is served or sent up depending on the router's
//   confidence, one break-even for both;
// - retraining (a new model file) reloads the policy without a restart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type OpenAI from 'openai';
import { trainGate, type GateArtifact, type GateExample } from '../../src/analysis/learn/gate-model.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, client } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';

const rejections = watchUnhandledRejections();

function examples(n: number): GateExample[] {
  return Array.from({ length: n }, (_, i) => {
    const a = 3 + (i % 17);
    const b = 2 + ((i * 7) % 13);
    const good = i % 3 !== 0;
    const result = good ? a * b : a * b + 1 + (i % 5);
    return {
      prompt: `A shop has ${b} boxes with ${a} apples in each. How many apples are there?`,
      reply: `${a} * ${b} = ${result}\n#### ${result}`,
      good: good ? 1 : 0,
      group: 'synthetic',
    } satisfies GateExample;
  });
}

/** The same model with every weight's sign flipped: it now prefers the answers it used to fail. */
function flipped(artifact: GateArtifact): GateArtifact {
  return { ...artifact, bias: -artifact.bias, weights: { indices: artifact.weights.indices, values: artifact.weights.values.map((v) => -v) } };
}

function policy(baseURL: string): string {
  const model = (name: string, input: number, output: number) =>
    `  ${name}: { provider: up, upstream: up-${name}, price: { input_per_mtok: ${input}, output_per_mtok: ${output} }, timeout_ms: 3000 }`;
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
${model('cheap', 1, 2)}
${model('strong', 10, 30)}
tiers:
  - { name: small, models: [cheap] }
  - { name: large, models: [strong] }
resilience: { retries: 0 }
features:
  sure: metadata.sure = true
routes:
  math:
    router: { plugin: rules, rules: [ { when: "true", tier: small, reason: cheap first } ] }
    default: small
    gate: { evaluators: [ { plugin: learned, model_path: models/gate.json } ], threshold: 0.5, max_escalations: 1 }
  cascade:
    router:
      plugin: rules
      rules:
        - { when: sure, tier: small, confidence: 0.97, reason: the router is sure }
        - { when: "true", tier: small, confidence: 0.02, reason: the router doubts }
    default: small
    costs: { under_routing: 4, over_routing: 1 }
    gate: { evaluators: [ { plugin: learned, model_path: models/gate.json } ], decide: cascade, max_escalations: 1 }
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

describe('the learned gate through the gateway', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;
  const artifact = trainGate(examples(300), { answeredBy: ['cheap'], qualityTarget: 0.5, dataHash: 'test' });
  const QUESTION = 'A shop has 6 boxes with 7 apples in each. How many apples are there?';
  const RIGHT = '6 * 7 = 42\n#### 42';
  const WRONG = '6 * 7 = 45\n#### 45';

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(policy(fake.baseURL), { watch: true, debounceMs: 40, files: { 'models/gate.json': JSON.stringify(artifact) } });
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
    rejections.assertNone();
  });

  test('threshold rule: a right answer is served from the cheap tier; one whose arithmetic is wrong climbs, with P(good) in the decision line', async () => {
    up.script({ 'up-cheap': reply(RIGHT), 'up-strong': reply('Six boxes of seven: 42 apples.') });
    const served = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();
    assert.equal(served.data.choices[0].message.content, RIGHT);
    assert.equal(served.response.headers.get('x-tiergate-tier'), 'small');
    assert.equal(served.response.headers.get('x-tiergate-gate'), 'passed');

    up.script({ 'up-cheap': reply(WRONG), 'up-strong': reply('Six boxes of seven: 42 apples.') });
    const climbed = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();
    assert.equal(climbed.data.choices[0].message.content, 'Six boxes of seven: 42 apples.');
    assert.equal(climbed.response.headers.get('x-tiergate-tier'), 'large');
    assert.equal(climbed.response.headers.get('x-tiergate-escalations'), '1');
    const line = await tg.waitForDecision(climbed.response.headers.get('x-tiergate-decision-id'));
    const gate = line.attempts[0].gate;
    assert.ok(gate && gate.passed === false);
    assert.equal(gate.evaluators[0].details?.answer_kind, 'number');
    assert.ok(Number(gate.evaluators[0].details?.p_good) < 0.5, `P(good) ${gate.evaluators[0].details?.p_good}`);
    assert.equal(gate.cost_usd, 0, 'the learned gate makes no model call');
  });

  test("cascade rule: the router's confidence and the gate's P(good) decide together", async () => {
    up.script({ 'up-cheap': reply(RIGHT), 'up-strong': reply('42') });
    const sure = await sdk.chat.completions.create(ask('cascade', QUESTION, { sure: true })).withResponse();
    const doubt = await sdk.chat.completions.create(ask('cascade', QUESTION)).withResponse();
    assert.equal(sure.response.headers.get('x-tiergate-tier'), 'small', 'a sure router and a good-looking answer: served');
    assert.equal(doubt.response.headers.get('x-tiergate-tier'), 'large', 'the same answer under a doubting router: below the break-even');
    const [sureLine, doubtLine] = [
      await tg.waitForDecision(sure.response.headers.get('x-tiergate-decision-id')),
      await tg.waitForDecision(doubt.response.headers.get('x-tiergate-decision-id')),
    ];
    for (const [line, prior] of [
      [sureLine, 0.97],
      [doubtLine, 0.02],
    ] as const) {
      const gate = line.attempts[0].gate;
      assert.ok(gate);
      assert.equal(gate.decide, 'cascade');
      assert.equal(gate.prior, prior);
      assert.equal(gate.break_even, 0.8);
      assert.equal(gate.score, sureLine.attempts[0].gate?.score, 'the gate scored the same answer the same');
    }
    assert.ok((sureLine.attempts[0].gate?.posterior ?? 0) >= 0.8);
    assert.ok((doubtLine.attempts[0].gate?.posterior ?? 1) < 0.8);
  });

  test('a retrained model file reloads the policy: the new model judges the next request', async () => {
    up.script({ 'up-cheap': reply(RIGHT), 'up-strong': reply('42') });
    const first = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();
    assert.equal(first.response.headers.get('x-tiergate-tier'), 'small');
    const version = first.response.headers.get('x-tiergate-policy-version');
    writeFileSync(path.join(tg.dir, 'models/gate.json'), JSON.stringify(flipped(artifact)));
    const deadline = Date.now() + 5000;
    let next = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();
    while (next.response.headers.get('x-tiergate-policy-version') === version && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      next = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();
    }
    assert.notEqual(next.response.headers.get('x-tiergate-policy-version'), version, 'no reload within 5 s of the model file changing');
    assert.equal(next.response.headers.get('x-tiergate-tier'), 'large', 'the flipped model fails the answer the old one passed');
  });
});
