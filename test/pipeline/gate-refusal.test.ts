// A gate that refuses, end to end: with gate.on_fail: refuse, an answer that fails the gate
// on every tier is not served (TG_ERR_GATE_ANSWER_REFUSED), JSON or streamed, and none of
// its bytes reach the client; gate.input_checks judge the request before any model is
// called (the regex and jsonata evaluators), refusing it (TG_ERR_GATE_INPUT_REFUSED) or
// only recording the verdict. The decision line records every case. The official openai
// and Anthropic SDKs as clients, a scripted fake-openai upstream.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError, drain } from '../support/http.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, askStream, client } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

// A US social security number: the personal data the team's gate keeps out of answers and prompts.
const SSN = String.raw`\b\d{3}-\d{2}-\d{4}\b`;
const LEAK = 'Your SSN is 123-45-6789.';
const noPii = `{ plugin: regex, name: no_pii, must_not_match: [${JSON.stringify(SSN)}] }`;
const shortPrompt = `{ plugin: jsonata, name: short_prompt, expression: "$length($lastUserMessage()) <= 40" }`;

function policy(baseURL: string): string {
  const route = (gate: string) => `
    router: { plugin: rules, rules: [ { when: "true", tier: small, reason: cheap first } ] }
    default: small
    gate: ${gate}`;
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
  small-a: { provider: up, upstream: up-small, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  large-l: { provider: up, upstream: up-large, price: { input_per_mtok: 10, output_per_mtok: 30 } }
tiers:
  - { name: small, models: [small-a] }
  - { name: large, models: [large-l] }
resilience: { retries: 0 }
routes:
  refusing: ${route(`{ evaluators: [ ${noPii} ], on_fail: refuse }`)}
  serving: ${route(`{ evaluators: [ ${noPii} ] }`)}
  checked: ${route(`{ evaluators: [ ${noPii} ], input_checks: { evaluators: [ ${noPii}, ${shortPrompt} ], on_fail: refuse } }`)}
  monitored: ${route(`{ evaluators: [ ${noPii} ], input_checks: { evaluators: [ ${noPii} ] } }`)}
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

describe('gates that refuse', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(policy(fake.baseURL));
    sdk = client(tg);
    anthropic = new Anthropic({ baseURL: tg.url, apiKey: 'unused', maxRetries: 0 });
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  const everyTierLeaks = () => up.script({ 'up-small': reply(`small: ${LEAK}`), 'up-large': reply(`large: ${LEAK}`) });

  describe('gate.on_fail', () => {
    test('refuse, JSON: every tier leaks → 422 TG_ERR_GATE_ANSWER_REFUSED, no answer text, and the decision line says refused', async () => {
      everyTierLeaks();
      const err = await apiError(sdk.chat.completions.create(ask('refusing', 'what is my number?')));
      assert.equal(err.status, 422);
      assert.equal(err.code, 'TG_ERR_GATE_ANSWER_REFUSED');
      assert.equal(err.type, 'invalid_request_error');
      assert.match(err.message, /refusing/);
      assert.match(err.message, /no_pii scored 0/);
      assert.ok(!JSON.stringify(err.error).includes('123-45-6789'), 'not a byte of the refused answer');
      assert.deepEqual(
        up.calls.map((c) => c.model),
        ['up-small', 'up-large'],
        'the ladder was climbed before refusing',
      );
      const line = await tg.waitForDecision(err.headers?.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.gate, 'refused');
      assert.equal(line.error_code, 'TG_ERR_GATE_ANSWER_REFUSED');
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.role, a.gate?.passed]),
        [
          ['small-a', 'routed', false],
          ['large-l', 'escalation', false],
        ],
      );
    });

    test('refuse, streamed (buffer): the refusal is a JSON error before any byte of the stream', async () => {
      everyTierLeaks();
      const res = await fetch(`${tg.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(askStream('refusing', 'stream my number')),
      });
      const text = await res.text();
      assert.equal(res.status, 422);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.ok(!text.includes('123-45-6789'), `no byte of the refused answer: ${text}`);
      assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'TG_ERR_GATE_ANSWER_REFUSED');
      const viaSdk = await apiError(sdk.chat.completions.create(askStream('refusing', 'stream my number')));
      assert.equal(viaSdk.status, 422);
      assert.equal(viaSdk.code, 'TG_ERR_GATE_ANSWER_REFUSED');
      const line = await tg.waitForDecision(viaSdk.headers?.get('x-tiergate-decision-id'));
      assert.equal(line.stream, true);
      assert.equal(line.gate, 'refused');
    });

    test('refuse still serves an answer that passes: the clean large answer, streamed', async () => {
      up.script({ 'up-small': reply(`small: ${LEAK}`), 'up-large': reply('I cannot share personal numbers.') });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('refusing', 'my number?')).withResponse();
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      const got = await drain(stream);
      assert.equal(got.error, undefined);
      assert.equal(got.text, 'I cannot share personal numbers.');
    });

    test('serve (the default): the best failing answer is served with x-tiergate-gate: failed, as before', async () => {
      everyTierLeaks();
      const { data, response } = await sdk.chat.completions.create(ask('serving', 'what is my number?')).withResponse();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-tiergate-gate'), 'failed');
      assert.equal(data.choices[0].message.content, `large: ${LEAK}`);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'ok');
      assert.equal(line.gate, 'failed');
    });
  });

  describe('gate.input_checks', () => {
    test('refuse: personal data in the prompt (regex) → 400 TG_ERR_GATE_INPUT_REFUSED, JSON and streamed, and no model is called', async () => {
      up.script({ 'up-small': reply('must not be called'), 'up-large': reply('must not be called') });
      for (const body of [ask('checked', 'my SSN is 123-45-6789'), askStream('checked', 'my SSN is 123-45-6789')]) {
        const err = await apiError(sdk.chat.completions.create(body as Parameters<typeof sdk.chat.completions.create>[0]));
        assert.equal(err.status, 400, body.stream ? 'stream' : 'JSON');
        assert.equal(err.code, 'TG_ERR_GATE_INPUT_REFUSED');
        assert.match(err.message, /no_pii scored 0/);
        assert.doesNotMatch(err.message, /short_prompt scored/, 'only the check that failed is named');
        const line = await tg.waitForDecision(err.headers?.get('x-tiergate-decision-id'));
        assert.equal(line.status, 'error');
        assert.equal(line.gate, 'refused');
        assert.equal(line.error_code, 'TG_ERR_GATE_INPUT_REFUSED');
        assert.equal(line.input_check?.passed, false);
        assert.deepEqual(
          line.input_check?.evaluators.map((e) => [e.name, e.score]),
          [
            ['no_pii', 0],
            ['short_prompt', 1],
          ],
        );
        assert.deepEqual(line.attempts, []);
      }
      assert.equal(up.calls.length, 0, 'no model saw the request');
    });

    test('refuse: a jsonata input check (prompt too long) refuses too; a request that passes both is answered', async () => {
      up.script({ 'up-small': reply('a clean answer') });
      const err = await apiError(sdk.chat.completions.create(ask('checked', 'x'.repeat(41))));
      assert.equal(err.code, 'TG_ERR_GATE_INPUT_REFUSED');
      assert.match(err.message, /short_prompt scored 0/);
      assert.equal(up.calls.length, 0);
      const { data, response } = await sdk.chat.completions.create(ask('checked', 'where is my order?')).withResponse();
      assert.equal(data.choices[0].message.content, 'a clean answer');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.input_check?.passed, true);
      assert.equal(line.gate, 'passed');
    });

    test('serve (the default): a failed input check is recorded and the request goes on', async () => {
      up.script({ 'up-small': reply('answered anyway') });
      const { data, response } = await sdk.chat.completions.create(ask('monitored', 'my SSN is 123-45-6789')).withResponse();
      assert.equal(data.choices[0].message.content, 'answered anyway');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'ok');
      assert.equal(line.input_check?.passed, false);
      assert.equal(line.input_check?.evaluators[0].score, 0);
      assert.equal(up.calls.length, 1);
    });
  });

  describe('the Anthropic Messages ingress', () => {
    test("both refusals come back in Anthropic's error shape, with tiergate's code", async () => {
      up.script({ 'up-small': reply(`small: ${LEAK}`), 'up-large': reply(`large: ${LEAK}`) });
      const input = await anthropic.messages.create({ model: 'checked', max_tokens: 64, messages: [{ role: 'user', content: 'my SSN is 123-45-6789' }] }).then(
        () => assert.fail('expected a refusal'),
        (e: unknown) => e,
      );
      assert.ok(input instanceof Anthropic.BadRequestError, String(input));
      assert.deepEqual(input.error, {
        type: 'error',
        error: { type: 'invalid_request_error', message: (input.error as { error: { message: string } }).error.message, code: 'TG_ERR_GATE_INPUT_REFUSED' },
      });
      const answer = await anthropic.messages
        .create({ model: 'refusing', max_tokens: 64, messages: [{ role: 'user', content: 'what is my number?' }], stream: true })
        .then(
          () => assert.fail('expected a refusal'),
          (e: unknown) => e,
        );
      assert.ok(answer instanceof Anthropic.UnprocessableEntityError, String(answer));
      const body = answer.error as { type: string; error: { type: string; code: string; message: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'invalid_request_error');
      assert.equal(body.error.code, 'TG_ERR_GATE_ANSWER_REFUSED');
      assert.ok(!body.error.message.includes('123-45-6789'));
    });
  });
});
