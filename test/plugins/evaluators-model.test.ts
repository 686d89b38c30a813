// Evaluators that read a model, in a real runtime (policy references, host keys, callModel
// through the simulator), then logprob (the answering model's own token confidence) and
// order_status (the team example) on the simulator's answers and through the openai
// provider against the local fake-openai server — never a mock of tiergate's code.
// llm_judge called directly is in evaluators-judge.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULT_RUBRIC, judgeMessages } from '../../plugins/evaluators/llm_judge/index.ts';
import logprob from '../../plugins/evaluators/logprob/index.ts';
import orderStatus from '../../plugins/evaluators/order_status/index.ts';
import openaiPlugin from '../../plugins/providers/openai/index.ts';
import simulator from '../../plugins/providers/simulator/index.ts';
import type { ChatRequest, ChatResult, Evaluator, Provider } from '../../src/plugin-contract/plugin-api.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import type { Runtime } from '../../src/policy/runtime.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { estimateMessagesTokens } from '../../src/plugin-contract/tokens.ts';
import { collect, testPluginContext, type LogLine } from '../support/plugin-context.ts';
import { startFakeOpenAI, type FakeOpenAI, type FakeTokenLogprob } from '../support/fake-openai.ts';
import { simulatorPolicy } from '../support/gateway.ts';
import { ask, input, never, result, spec } from '../support/model-evaluators.ts';

// ---------------------------------------------------------------------------------
// A real runtime: policy references, host keys, callModel through the simulator

describe('evaluators in a policy', () => {
  const logger = createLogger({ level: 'silent' });
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tiergate-evaluators-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function policyWithGate(evaluators: string): string {
    const file = path.join(dir, 'gateway.yaml');
    writeFileSync(
      file,
      simulatorPolicy({
        routes: `  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: small }
    default: small
    gate:
      evaluators:
${evaluators}`,
      }),
    );
    return file;
  }

  test('a gate with llm_judge, logprob and order_status builds; the judge calls a policy model', async () => {
    const file = policyWithGate(`        - { plugin: llm_judge, name: judge, model: small-model, threshold: 0.6 }
        - { plugin: logprob, aggregate: p10, weight: 2 }
        - { plugin: order_status, when: "true" }`);
    const runtime: Runtime = await buildRuntime(file, { logger, mode: 'validate' });
    try {
      const route = runtime.routes.get('support');
      assert.ok(route?.gate);
      // Host keys (name, threshold, weight, when) stayed with the host: the closed option
      // schemas would have rejected them otherwise.
      assert.deepEqual(
        route.gate.evaluators.map((e) => e.name),
        ['judge', 'logprob', 'order_status'],
      );
      assert.deepEqual(route.upstreamParameters, { logprobs: true }, 'the logprob evaluator asks every upstream call for logprobs');

      // callModel works once the runtime is built: the judge prompt reaches the simulator.
      const evalInput = input(ask('Explain how photosynthesis works.'), result('Plants turn light into sugar.'));
      const evaluation = await route.gate.evaluators[0].evaluator.evaluate(evalInput, never());
      assert.equal(evaluation.spent?.length, 1);
      assert.equal(evaluation.spent[0].model, 'small-model');
      // The simulator counts prompt tokens with the same estimate: proof it got exactly the judge prompt.
      assert.equal(evaluation.spent[0].usage.prompt_tokens, estimateMessagesTokens(judgeMessages(evalInput, DEFAULT_RUBRIC, 4000)));
      assert.ok(evaluation.score >= 0 && evaluation.score <= 1);
    } finally {
      await runtime.dispose();
    }
  });

  test('a judge model the policy does not declare is a located reference error', async () => {
    const file = policyWithGate('        - { plugin: llm_judge, model: smal-model }');
    await assert.rejects(buildRuntime(file, { logger, mode: 'validate' }), (err: unknown) => {
      assert.ok(err instanceof PolicyErrors, String(err));
      assert.deepEqual(
        err.errors.map((e) => e.code),
        ['TG_ERR_CONFIG_REFERENCE'],
        err.message,
      );
      assert.match(
        err.errors[0].located(),
        /gateway\.yaml:\d+:\d+ routes\.support\.gate\.evaluators\[0\]\.model: no model named "smal-model" \(did you mean "small-model"\?\)/,
      );
      return true;
    });
  });

  test('llm_judge without a model is an options error', async () => {
    const file = policyWithGate('        - { plugin: llm_judge, rubric: be nice }');
    await assert.rejects(buildRuntime(file, { logger, mode: 'validate' }), (err: unknown) => {
      assert.ok(err instanceof PolicyErrors, String(err));
      assert.deepEqual(
        err.errors.map((e) => e.code),
        ['TG_ERR_PLUGIN_OPTIONS'],
        err.message,
      );
      assert.match(err.errors[0].located(), /gateway\.yaml:\d+:\d+ routes\.support\.gate\.evaluators\[0\]: missing required key "model"/);
      return true;
    });
  });
});

// ---------------------------------------------------------------------------------
// logprob

const sim = {
  profiles: {
    strong: { capability: 1, first_token_ms: 0, tokens_per_second: 100 },
    weak: { capability: 0.05, first_token_ms: 0, tokens_per_second: 100 },
  },
  time_scale: 0,
};

// Easy and hard, short and long; the weak model fails each (hedge, refusal or
// truncation), the strong one answers each.
const PROMPTS = [
  'Where is my package? Order 12345',
  'Explain how photosynthesis works.',
  'What is the capital of France?',
  'Prove that the square root of 2 is irrational, step by step.',
  'My contractor breached our contract. Explain step by step what I need to prove and analyze my liability.',
  'Compare quicksort and mergesort and justify which to use for linked lists.',
];

async function logprobEvaluator(options: Parameters<typeof logprob.create>[0] = {}, logs?: LogLine[]): Promise<Evaluator> {
  return logprob.create(options, testPluginContext({ at: 'routes.support.gate.evaluators[1]', logs }));
}

describe('logprob', () => {
  let provider: Provider;
  before(async () => {
    provider = await simulator.create(sim, testPluginContext({ at: 'providers.sim' }));
  });
  after(() => provider?.dispose());

  /** One simulator answer, asked the way the gateway asks on a gated route. */
  async function answer(model: string, question: string, evaluator: Evaluator, stream = false): Promise<{ request: ChatRequest; response: ChatResult }> {
    const request: ChatRequest = { model, messages: ask(question), ...evaluator.upstreamParameters };
    const response = await provider.complete(request, { model: spec(model), signal: never() });
    if (stream) await collect(provider.stream({ ...request, stream: true }, { model: spec(model), signal: never() }));
    return { request, response };
  }

  test('asks the provider for logprobs', async () => {
    const evaluator = await logprobEvaluator();
    assert.deepEqual(evaluator.upstreamParameters, { logprobs: true });
    await evaluator.dispose();
    await evaluator.dispose();
  });

  test('the simulator returns logprobs in OpenAI shape only when asked, the same every time', async () => {
    const plain = await provider.complete({ model: 'strong', messages: ask(PROMPTS[1]) }, { model: spec('strong'), signal: never() });
    assert.equal(plain.choices[0].logprobs, null);

    const asked = await provider.complete({ model: 'strong', messages: ask(PROMPTS[1]), logprobs: true }, { model: spec('strong'), signal: never() });
    const again = await provider.complete({ model: 'strong', messages: ask(PROMPTS[1]), logprobs: true }, { model: spec('strong'), signal: never() });
    const content = (asked.choices[0].logprobs as { content: Array<{ token: string; logprob: number; bytes: null; top_logprobs: unknown[] }> }).content;
    assert.ok(content.length > 10);
    assert.equal(content.map((t) => t.token).join(''), asked.choices[0].message.content, 'tokens join to the answer');
    for (const t of content) {
      assert.ok(t.logprob <= 0 && Number.isFinite(t.logprob));
      assert.equal(t.bytes, null);
      assert.deepEqual(t.top_logprobs, []);
    }
    assert.deepEqual(again.choices[0].logprobs, asked.choices[0].logprobs);
  });

  test("simulator streams carry each chunk's logprobs, matching the complete answer", async () => {
    for (const [model, question] of [
      ['strong', PROMPTS[3]],
      ['weak', PROMPTS[3]],
      ['weak', PROMPTS[0]],
    ] as const) {
      const request: ChatRequest = { model, messages: ask(question), logprobs: true };
      const whole = await provider.complete(request, { model: spec(model), signal: never() });
      const chunks = await collect(provider.stream({ ...request, stream: true }, { model: spec(model), signal: never() }));
      const streamed = chunks.flatMap((c) => (c.choices[0]?.logprobs as { content?: unknown[] } | undefined)?.content ?? []);
      assert.deepEqual(streamed, (whole.choices[0].logprobs as { content: unknown[] }).content);
      for (const c of chunks) {
        const lp = c.choices[0]?.logprobs as { content: Array<{ token: string }> } | undefined;
        if (lp) assert.equal(lp.content.map((t) => t.token).join(''), c.choices[0].delta.content, 'a chunk carries the tokens it delivers');
      }
    }
  });

  test('a competent answer scores above a deficient one, under every aggregate', async () => {
    for (const aggregate of ['mean', 'min', 'p10'] as const) {
      const evaluator = await logprobEvaluator({ aggregate });
      const strongScores: number[] = [];
      const weakScores: number[] = [];
      for (const question of PROMPTS) {
        const strong = await answer('strong', question, evaluator);
        const weak = await answer('weak', question, evaluator);
        const s = await evaluator.evaluate(input(strong.request.messages, strong.response, spec('strong')), never());
        const w = await evaluator.evaluate(input(weak.request.messages, weak.response, spec('weak')), never());
        assert.ok(s.score > w.score, `${aggregate}: "${question}" strong ${s.score} vs weak ${w.score}`);
        assert.equal(s.details?.aggregate, aggregate);
        assert.equal(s.details?.tokens, (strong.response.choices[0].logprobs as { content: unknown[] }).content.length);
        strongScores.push(s.score);
        weakScores.push(w.score);
      }
      // Not just ordered per prompt: one threshold separates the two populations.
      assert.ok(Math.min(...strongScores) > Math.max(...weakScores), `${aggregate}: strong ${strongScores} / weak ${weakScores}`);
      await evaluator.dispose();
    }
  });

  test('score is exp(aggregate logprob): mean, min and 10th percentile', async () => {
    // 20 tokens: two bad ones, so p10 (nearest rank: the 2nd lowest) is -2 while min is -3.
    const values = [-3, -2, ...Array.from({ length: 18 }, () => -0.1)];
    const response = result('x', { logprobs: { content: values.map((logprob, i) => ({ token: `t${i}`, logprob, bytes: null, top_logprobs: [] })) } });
    const expected = { mean: values.reduce((a, b) => a + b) / values.length, min: -3, p10: -2 };
    for (const aggregate of ['mean', 'min', 'p10'] as const) {
      const evaluator = await logprobEvaluator({ aggregate });
      const evaluation = await evaluator.evaluate(input(ask('q'), response), never());
      assert.ok(Math.abs(evaluation.score - Math.exp(expected[aggregate])) < 1e-6, `${aggregate}: ${evaluation.score}`);
      assert.ok(Math.abs(Number(evaluation.details?.logprob) - expected[aggregate]) < 1e-6);
      assert.equal(evaluation.details?.tokens, 20);
    }
  });

  test('missing logprobs score by when_missing (default neutral = 0.5), warn once per model, never throw', async () => {
    const logs: LogLine[] = [];
    const missing: ChatResult[] = [
      result('no logprobs field'),
      result('null', { logprobs: null }),
      result('empty', { logprobs: { content: [] } }),
      result('not a list', { logprobs: { content: 'nope' } }),
      result('no numbers', { logprobs: { content: [{ token: 'a', logprob: 'high' }, null, { token: 'b' }] } }),
      { ...result('no choices'), choices: [] },
    ];
    const neutral = await logprobEvaluator({}, logs);
    for (const response of missing) {
      const evaluation = await neutral.evaluate(input(ask('q'), response), never());
      assert.deepEqual(evaluation, { score: 0.5, details: { missing: true, when_missing: 'neutral', tokens: 0 } });
    }
    assert.equal(logs.filter((l) => l.level === 'warn').length, 1, 'one warning per model, not per request');
    assert.match(logs[0].message, /model "small-model" returned no token logprobs/);

    // And a real one: the simulator when the request did not ask for them.
    const plain = await provider.complete({ model: 'strong', messages: ask(PROMPTS[0]) }, { model: spec('strong'), signal: never() });
    for (const [when_missing, score] of [
      ['pass', 1],
      ['fail', 0],
      ['neutral', 0.5],
    ] as const) {
      const evaluator = await logprobEvaluator({ when_missing });
      assert.equal((await evaluator.evaluate(input(ask(PROMPTS[0]), plain), never())).score, score, when_missing);
    }
  });

  describe('through the openai provider', () => {
    let fake: FakeOpenAI;
    let openai: Provider;
    const tokens: FakeTokenLogprob[] = [
      { token: 'Paris', logprob: -0.01 },
      { token: ' is', logprob: -0.2 },
      { token: ' the', logprob: -0.05 },
      { token: ' capital', logprob: -1.1 },
      { token: '.', logprob: -0.04 },
    ];
    before(async () => {
      fake = await startFakeOpenAI({ behave: () => ({ kind: 'reply', content: 'Paris is the capital.', logprobs: tokens }) });
      openai = await openaiPlugin.create({ base_url: fake.baseURL }, testPluginContext({ at: 'providers.openai' }));
    });
    after(async () => {
      await openai?.dispose();
      await fake?.close();
    });

    test('logprobs asked for, returned and scored', async () => {
      const evaluator = await logprobEvaluator();
      const model = spec('gpt', 'gpt-x', 'openai');
      const request: ChatRequest = { model: 'gpt-x', messages: ask('Capital of France?'), ...evaluator.upstreamParameters };
      const response = await openai.complete(request, { model, signal: never() });
      assert.equal(fake.requests.at(-1)?.body.logprobs, true, 'the upstream was asked');
      const evaluation = await evaluator.evaluate(input(request.messages, response, model), never());
      const mean = tokens.reduce((sum, t) => sum + t.logprob, 0) / tokens.length;
      assert.ok(Math.abs(evaluation.score - Math.exp(mean)) < 1e-6, String(evaluation.score));
      assert.equal(evaluation.details?.tokens, 5);
    });

    test('not asked: the fake sends none, and when_missing decides', async () => {
      const response = await openai.complete(
        { model: 'gpt-x', messages: ask('Capital of France?') },
        { model: spec('gpt', 'gpt-x', 'openai'), signal: never() },
      );
      assert.equal(response.choices[0].logprobs, null);
      const evaluator = await logprobEvaluator({ when_missing: 'fail' });
      assert.equal((await evaluator.evaluate(input(ask('Capital of France?'), response), never())).score, 0);
    });

    test('a stream spreads the logprobs over its content chunks, in order', async () => {
      const chunks = await collect(
        openai.stream({ model: 'gpt-x', messages: ask('Capital of France?'), logprobs: true }, { model: spec('gpt', 'gpt-x', 'openai'), signal: never() }),
      );
      const streamed = chunks.flatMap(
        (c) => (c.choices[0]?.logprobs as { content?: Array<{ token: string; logprob: number }> } | null | undefined)?.content ?? [],
      );
      assert.deepEqual(
        streamed.map((t) => [t.token, t.logprob]),
        tokens.map((t) => [t.token, t.logprob]),
      );
      assert.ok(
        chunks.filter((c) => (c.choices[0]?.logprobs as { content?: unknown[] } | null | undefined)?.content?.length).length > 1,
        'spread over several chunks',
      );
    });
  });
});

// ---------------------------------------------------------------------------------
// order_status (the team example)

describe('order_status', () => {
  async function score(question: string, answerText: string, options: Parameters<typeof orderStatus.create>[0] = {}) {
    const evaluator = await orderStatus.create(options, testPluginContext({ at: 'routes.support.gate.evaluators[2]' }));
    const evaluation = await evaluator.evaluate(input(ask(question), result(answerText)), never());
    await evaluator.dispose();
    return evaluation;
  }

  test('a shipment state and the repeated order number score 1', async () => {
    assert.deepEqual(await score('Where is my order 12345?', 'Order 12345 is out for delivery today.'), {
      score: 1,
      details: { applies: true, state: 'out for delivery', order_number: '12345', order_number_repeated: true },
    });
    assert.equal((await score('Where is my parcel? Order #A-7781', 'Parcel a-7781 was DELIVERED this morning.')).score, 1);
    assert.equal((await score('Has my package arrived yet?', 'It is in transit and arrives Friday.')).score, 1, 'no number asked, none needed');
  });

  test('a state without the order number scores 0.5; no state scores 0', async () => {
    assert.deepEqual(await score('Where is my order 12345?', 'Your order has shipped.'), {
      score: 0.5,
      details: { applies: true, state: 'shipped', order_number: '12345', order_number_repeated: false },
    });
    assert.deepEqual(await score('Where is my order 12345?', 'Order 12345 should reach you soon, I think.'), {
      score: 0,
      details: { applies: true, state: null, order_number: '12345', order_number_repeated: true },
    });
    assert.equal((await score('Where is my package?', "I'm sorry, but I can't help with that.")).score, 0);
    // Whole words: "undelivered" is not "delivered".
    assert.equal((await score('Where is my package?', 'The undelivered-mail office will know.')).score, 0);
  });

  test('questions that are not about an order pass untouched', async () => {
    for (const question of ['Explain how photosynthesis works.', 'In order to bake bread, what do I need?', 'How do I change my password?']) {
      assert.deepEqual(await score(question, 'Anything at all.'), { score: 1, details: { applies: false } }, question);
    }
  });

  test('options: custom states, and the order number made optional', async () => {
    assert.equal((await score('Where is my order 12345?', 'Your order has shipped.', { require_order_number: false })).score, 1);
    assert.equal((await score('Where is my order 12345?', 'Order 12345 is with the courier.')).score, 0);
    assert.equal((await score('Where is my order 12345?', 'Order 12345 is with the courier.', { states: ['with the courier'] })).score, 1);
  });

  test("the simulator's answers: a competent model passes, a weak model's hedges and refusals fail", async () => {
    const provider = await simulator.create(sim, testPluginContext({ at: 'providers.sim' }));
    const evaluator = await orderStatus.create({}, testPluginContext({ at: 'x' }));
    const questions = [
      'Where is my package? Order 12345',
      'Where is my order 90210?',
      'When will my package 31337 arrive?',
      'Track my shipment 77001 please',
      'Where is order 4242?',
    ];
    const weakScores: number[] = [];
    try {
      for (const question of questions) {
        const messages = ask(question);
        const strong = await provider.complete({ model: 'strong', messages }, { model: spec('strong'), signal: never() });
        const s = await evaluator.evaluate(input(messages, strong, spec('strong')), never());
        assert.equal(s.score, 1, `strong on "${question}": ${strong.choices[0].message.content}`);
        assert.equal(s.details?.order_number_repeated, true);

        const weak = await provider.complete({ model: 'weak', messages }, { model: spec('weak'), signal: never() });
        const w = await evaluator.evaluate(input(messages, weak, spec('weak')), never());
        // A truncated weak answer may still name the state before it breaks off (that is
        // the heuristics gate's catch); a hedge or refusal never does.
        if (weak.choices[0].finish_reason !== 'length') assert.equal(w.score, 0, `weak on "${question}": ${weak.choices[0].message.content}`);
        weakScores.push(w.score);
      }
      assert.ok(weakScores.filter((s) => s === 0).length >= 3, `most weak answers fail: ${weakScores}`);
    } finally {
      await evaluator.dispose();
      await provider.dispose();
    }
  });
});
