// The agreement gate over real HTTP: the official openai SDK talks to a real tiergate,
// tiergate talks through the real `openai` provider plugin to a local fake-openai server
// scripted per upstream model. A two-tier route is gated by `agreement` with another
// cheap model as the second opinion: when the two cheap answers agree the cheap answer is
// served, and the second call is paid for in the decision's cost; when they differ the
// request climbs to the strong tier. Without `model`, the answering model is asked again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, client, cost, price, sumOfAttempts } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';

const rejections = watchUnhandledRejections();

const CHEAP = price(1, 2);
const SECOND = price(0.5, 1.5);
const STRONG = price(10, 30);

function policy(baseURL: string): string {
  const model = (name: string, p: { input: number; output: number }) =>
    `  ${name}: { provider: up, upstream: up-${name}, price: { input_per_mtok: ${p.input}, output_per_mtok: ${p.output} }, timeout_ms: 3000 }`;
  const toCheap = `router: { plugin: rules, rules: [ { when: "true", tier: cheap, confidence: 0.9, reason: cheap first } ] }`;
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
${model('cheap-a', CHEAP)}
${model('cheap-b', SECOND)}
${model('strong-m', STRONG)}
tiers:
  - { name: cheap, models: [cheap-a] }
  - { name: strong, models: [strong-m] }
resilience: { retries: 0 }
routes:
  math:
    ${toCheap}
    default: cheap
    gate: { evaluators: [ { plugin: agreement, model: cheap-b } ], threshold: 0.5, max_escalations: 1 }
  again:
    ${toCheap}
    default: cheap
    gate: { evaluators: [ { plugin: agreement } ], threshold: 0.5, max_escalations: 1 }
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

describe('the agreement gate through the gateway', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(policy(fake.baseURL));
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
    rejections.assertNone();
  });

  const QUESTION = 'A box holds 6 eggs. How many eggs are in 7 boxes?';

  test('the two cheap answers agree ("The answer is 42" / "#### 42"): served from the cheap tier, the second call paid for', async () => {
    const firstUsage = { prompt_tokens: 30, completion_tokens: 8 };
    const secondUsage = { prompt_tokens: 30, completion_tokens: 40 };
    up.script({
      'up-cheap-a': reply('6 × 7 = 42. The answer is 42', firstUsage),
      'up-cheap-b': reply('6 eggs per box, 7 boxes: 6 * 7 = 42\n#### 42', secondUsage),
    });
    const { data, response } = await sdk.chat.completions.create({ ...ask('math', QUESTION), temperature: 0.2, seed: 7 }).withResponse();

    assert.equal(data.choices[0].message.content, '6 × 7 = 42. The answer is 42');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(response.headers.get('x-tiergate-tier'), 'cheap');
    assert.equal(response.headers.get('x-tiergate-escalations'), '0');
    assert.equal(up.to('up-strong-m').length, 0, 'agreement needs no strong model');
    // The second model was asked the same conversation, with the request's own parameters.
    const [second] = up.to('up-cheap-b');
    assert.ok(second, 'the second model was asked');
    assert.deepEqual(second.body.messages, [{ role: 'user', content: QUESTION }]);
    assert.equal(second.body.temperature, 0.2, "another model answers at the request's temperature");
    assert.notEqual(second.body.stream, true);

    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.gate, 'passed');
    assert.equal(line.was_escalated, false);
    const gate = line.attempts[0].gate;
    assert.ok(gate);
    assert.equal(gate.score, 1);
    assert.deepEqual(gate.evaluators[0].details, { second_model: 'cheap-b', type: 'number', first: '42', second: '42', agree: true });
    assert.equal(gate.cost_usd, cost(SECOND, secondUsage), 'the gate cost is the second call');
    assert.equal(line.attempts[0].cost_usd, cost(CHEAP, firstUsage));
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts));
    assert.equal(line.cost_usd, cost(CHEAP, firstUsage) + cost(SECOND, secondUsage), 'the decision cost includes the agreement call');
  });

  test('they differ (41 / 42): escalated to the strong tier, whose answer the second model confirms', async () => {
    const strongUsage = { prompt_tokens: 30, completion_tokens: 12 };
    up.script({
      'up-cheap-a': reply('6 + 7 = 13... no: 41. The answer is 41', { prompt_tokens: 30, completion_tokens: 15 }),
      'up-cheap-b': reply('#### 42', { prompt_tokens: 30, completion_tokens: 4 }),
      'up-strong-m': reply('Seven boxes of six: 42 eggs.', strongUsage),
    });
    const { data, response } = await sdk.chat.completions.create(ask('math', QUESTION)).withResponse();

    assert.equal(data.choices[0].message.content, 'Seven boxes of six: 42 eggs.');
    assert.equal(response.headers.get('x-tiergate-tier'), 'strong');
    assert.equal(response.headers.get('x-tiergate-escalations'), '1');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(up.to('up-cheap-b').length, 2, 'the second model checked the cheap answer, then the strong one');

    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.was_escalated, true);
    assert.equal(line.routed_tier, 'cheap');
    assert.deepEqual(line.attempts[0].gate?.evaluators[0].details, { second_model: 'cheap-b', type: 'number', first: '41', second: '42', agree: false });
    assert.equal(line.attempts[0].gate?.passed, false);
    assert.equal(line.attempts[1].gate?.passed, true);
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts), 'every call is paid for: two answers and two agreement calls');
    const expected =
      cost(CHEAP, { prompt_tokens: 30, completion_tokens: 15 }) + cost(STRONG, strongUsage) + 2 * cost(SECOND, { prompt_tokens: 30, completion_tokens: 4 });
    // Summed in another order than the log's, so equal up to floating-point rounding.
    assert.ok(Math.abs(line.cost_usd - expected) < 1e-15, `cost ${line.cost_usd} vs ${expected}`);
  });

  test('without `model`, the answering model is asked again, sampling, without the seed', async () => {
    up.script({ 'up-cheap-a': (n) => reply(n === 0 ? 'B' : 'The answer is (B).') });
    const question = 'Which is a mammal?\nA) shark\nB) whale\nC) trout\nAnswer with the letter.';
    const { data, response } = await sdk.chat.completions.create({ ...ask('again', question), temperature: 0, seed: 7 }).withResponse();
    assert.equal(data.choices[0].message.content, 'B');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    const calls = up.to('up-cheap-a');
    assert.equal(calls.length, 2);
    assert.equal(calls[1].body.temperature, 1, 'asked again at temperature 0 the model would only repeat itself');
    assert.equal(calls[1].body.seed, undefined);
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.deepEqual(line.attempts[0].gate?.evaluators[0].details, { second_model: 'cheap-a', type: 'choice', first: 'B', second: 'B', agree: true });
    assert.ok((line.attempts[0].gate?.cost_usd ?? 0) > 0, 'the repeated call is paid for');
  });
});
