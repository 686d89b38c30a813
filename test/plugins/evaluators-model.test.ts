// Evaluators that read a model: llm_judge (a second model grades the answer), logprob
// (the answering model's own token confidence) and order_status (the team example).
// Judges are real provider calls — the openai plugin against the local fake-openai
// server, or the simulator through a real runtime — never a mock of tiergate's code.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import llmJudge, { DEFAULT_RUBRIC, judgeMessages, parseVerdict } from '../../plugins/evaluators/llm_judge/index.ts';
import logprob from '../../plugins/evaluators/logprob/index.ts';
import orderStatus from '../../plugins/evaluators/order_status/index.ts';
import openaiPlugin from '../../plugins/providers/openai/index.ts';
import simulator from '../../plugins/providers/simulator/index.ts';
import {
  isUpstreamError,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type EvalInput,
  type Evaluator,
  type ModelSpec,
  type PluginContext,
  type Provider,
  type RequestView,
} from '../../src/plugin-sdk/plugin-api.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import type { Runtime } from '../../src/policy/runtime.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { estimateMessagesTokens, estimateTextTokens } from '../../src/plugin-sdk/tokens.ts';
import { collect, testPluginContext, type LogLine } from '../support/plugin-context.ts';
import { startFakeOpenAI, type FakeOpenAI, type FakeTokenLogprob } from '../support/fake-openai.ts';
import { simulatorPolicy } from '../support/gateway.ts';

// ---------------------------------------------------------------------------------
// Helpers

function spec(name: string, upstream = name, provider = 'p'): ModelSpec {
  return { name, provider, upstream, price: { input_per_mtok: 1, output_per_mtok: 2 }, timeout_ms: 5000 };
}

function view(messages: ChatMessage[], parameters: Record<string, unknown> = {}): RequestView {
  return { model: 'support', messages, parameters, metadata: {}, headers: {}, stream: false };
}

function result(content: string | null, extra: Partial<ChatResult['choices'][number]> = {}): ChatResult {
  return {
    id: 'r1',
    object: 'chat.completion',
    created: 0,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop', ...extra }],
  };
}

function input(messages: ChatMessage[], response: ChatResult, model: ModelSpec = spec('small-model')): EvalInput {
  return { request: view(messages), response, features: {}, model };
}

function ask(question: string, system?: string): ChatMessage[] {
  return system
    ? [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ]
    : [{ role: 'user', content: question }];
}

const never = () => new AbortController().signal;

// ---------------------------------------------------------------------------------
// llm_judge

describe('llm_judge', () => {
  const judge = spec('judge', 'gpt-judge', 'openai');
  let fake: FakeOpenAI;
  let provider: Provider;
  const calls: Array<{ model: string; request: Omit<ChatRequest, 'model'> }> = [];

  // What the runtime's callModel does for a policy model: the provider call with the
  // model's upstream name. Here the provider is the real openai plugin over HTTP.
  const callModel: PluginContext['callModel'] = async (model, request, signal) => {
    calls.push({ model, request });
    assert.equal(model, judge.name, 'the judge calls the model its options name');
    // The cast as in src/policy/compile.ts: Omit over ChatRequest's index signature drops `messages` from the type.
    return provider.complete({ ...request, model: judge.upstream } as ChatRequest, { model: judge, signal });
  };
  const ctx = testPluginContext({ at: 'routes.support.gate.evaluators[0]', callModel });

  const QUESTION = 'What is the boiling point of water at sea level, in Celsius?';
  const SYSTEM = 'You are a concise science tutor. Answer in one sentence.';
  const ANSWER = 'Water boils at 100 °C at sea level.';
  const RUBRIC = 'The answer must give the number with its unit.';

  async function grade(reply: string, options: { rubric?: string; max_chars?: number } = {}) {
    fake.behave(() => ({ kind: 'reply', content: reply, usage: { prompt_tokens: 321, completion_tokens: 12 } }));
    const evaluator = await llmJudge.create({ model: 'judge', ...options }, ctx);
    try {
      return await evaluator.evaluate(input(ask(QUESTION, SYSTEM), result(ANSWER)), never());
    } finally {
      await evaluator.dispose();
    }
  }

  before(async () => {
    fake = await startFakeOpenAI();
    provider = await openaiPlugin.create({ base_url: fake.baseURL }, testPluginContext({ at: 'providers.openai' }));
  });
  after(async () => {
    await provider?.dispose();
    await fake?.close();
  });
  beforeEach(() => {
    fake.requests.length = 0;
    calls.length = 0;
  });

  test('create does not call the judge; evaluate sends rubric, system prompt, question and answer', async () => {
    const evaluator = await llmJudge.create({ model: 'judge', rubric: RUBRIC }, ctx);
    // callModel does not work inside create in the real runtime: create must not need it.
    assert.equal(calls.length, 0);
    fake.behave(() => ({ kind: 'reply', content: 'SCORE: 8\nREASON: Correct value and unit.', usage: { prompt_tokens: 321, completion_tokens: 12 } }));
    const evaluation = await evaluator.evaluate(input(ask(QUESTION, SYSTEM), result(ANSWER)), never());
    await evaluator.dispose();

    assert.equal(fake.requests.length, 1);
    const body = fake.requests[0].body;
    assert.equal(body.model, 'gpt-judge');
    assert.equal(body.max_tokens, 200);
    assert.equal(body.temperature, 0);
    const [system, user] = body.messages as Array<{ role: string; content: string }>;
    assert.equal(system.role, 'system');
    assert.ok(system.content.includes(RUBRIC), 'the rubric is in the judge instructions');
    assert.match(system.content, /SCORE: <an integer from 1/);
    assert.equal(user.role, 'user');
    for (const part of [QUESTION, SYSTEM, ANSWER]) assert.ok(user.content.includes(part), `the judge sees: ${part}`);

    assert.equal(evaluation.score, 7 / 9);
    assert.deepEqual(evaluation.details, { judge: 'judge', judge_score: 8, reason: 'Correct value and unit.' });
    // The judge's tokens are the request's cost too.
    assert.deepEqual(evaluation.spent, [{ model: 'judge', usage: { prompt_tokens: 321, completion_tokens: 12, total_tokens: 333 } }]);
  });

  test('the default rubric asks for correctness, completeness and following instructions', async () => {
    await grade('SCORE: 5');
    const system = fake.requests[0].body.messages[0].content as string;
    assert.ok(system.includes(DEFAULT_RUBRIC));
    assert.match(DEFAULT_RUBRIC, /correct/i);
    assert.match(DEFAULT_RUBRIC, /complete/i);
    assert.match(DEFAULT_RUBRIC, /instructions/i);
  });

  test('reads the verdict in the shapes judges actually write', async () => {
    const eight = [
      'SCORE: 8\nREASON: fine',
      'Score: 8/10\nReason: fine',
      '**Score:** 8\n**Reason:** fine',
      '8/10 - fine',
      'I would give this 8 out of 10. fine',
      '{"score": 8, "reason": "fine"}',
      '```json\n{"score": "8", "reason": "fine"}\n```',
    ];
    for (const reply of eight) {
      const evaluation = await grade(reply);
      assert.equal(evaluation.score, 7 / 9, `reply: ${JSON.stringify(reply)}`);
      assert.equal(evaluation.details?.judge_score, 8, `reply: ${JSON.stringify(reply)}`);
      assert.match(String(evaluation.details?.reason), /fine/, `reason of ${JSON.stringify(reply)}`);
    }
    // A bare number is a verdict with no reason.
    assert.deepEqual((await grade('8')).details, { judge: 'judge', judge_score: 8, reason: '' });
    // The ends of the scale map to the ends of [0, 1].
    assert.equal((await grade('SCORE: 10\nREASON: perfect')).score, 1);
    assert.equal((await grade('SCORE: 1\nREASON: wrong')).score, 0);
    assert.equal((await grade('SCORE: 5.5')).score, 0.5);
  });

  test('an unreadable verdict scores 0, says why and still reports the judge cost', async () => {
    for (const reply of ['The answer looks pretty good to me.', 'SCORE: <an integer from 1 to 10>', 'Score: 85', 'SCORE: 0', '']) {
      const evaluation = await grade(reply);
      assert.equal(evaluation.score, 0, `reply: ${JSON.stringify(reply)}`);
      assert.equal(typeof evaluation.details?.error, 'string', `reply: ${JSON.stringify(reply)}`);
      assert.equal(evaluation.details?.reply, reply.replace(/\s+/g, ' ').trim());
      assert.equal(evaluation.details?.judge_score, undefined);
      assert.deepEqual(evaluation.spent, [{ model: 'judge', usage: { prompt_tokens: 321, completion_tokens: 12, total_tokens: 333 } }]);
    }
    assert.match(String((await grade('Score: 85')).details?.error), /outside 1–10/);
  });

  test('a judge reply without usage is costed by estimate', async () => {
    const noUsage: PluginContext['callModel'] = async (model, request, signal) => {
      const { usage: _usage, ...rest } = await callModel(model, request, signal);
      return rest as ChatResult;
    };
    fake.behave(() => ({ kind: 'reply', content: 'SCORE: 9\nREASON: good' }));
    const evaluator = await llmJudge.create({ model: 'judge' }, testPluginContext({ at: 'x', callModel: noUsage }));
    const evalInput = input(ask(QUESTION, SYSTEM), result(ANSWER));
    const evaluation = await evaluator.evaluate(evalInput, never());
    const prompt = estimateMessagesTokens(judgeMessages(evalInput, DEFAULT_RUBRIC, 4000));
    const completion = estimateTextTokens('SCORE: 9\nREASON: good');
    assert.ok(prompt > 50, 'the estimate covers the whole judge prompt');
    assert.deepEqual(evaluation.spent, [
      { model: 'judge', usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } },
    ]);
    assert.equal(evaluation.details?.usage_estimated, true);
  });

  test('long conversations are cut to max_chars in the judge prompt', async () => {
    const evaluator = await llmJudge.create({ model: 'judge', max_chars: 500 }, ctx);
    fake.behave(() => ({ kind: 'reply', content: 'SCORE: 6' }));
    await evaluator.evaluate(input(ask('Why? '.repeat(4000), 'Rules. '.repeat(4000)), result('Because. '.repeat(4000))), never());
    const user = fake.requests[0].body.messages[1].content as string;
    // Three parts of at most 500 characters each, plus markers and headings.
    assert.ok(user.length < 3 * 500 + 600, `judge prompt is ${user.length} characters`);
    assert.equal((user.match(/\[cut: \d+ more characters\]/g) ?? []).length, 3);
  });

  test('tool calls are what the judge sees when the answer has no text', async () => {
    const evaluator = await llmJudge.create({ model: 'judge' }, ctx);
    fake.behave(() => ({ kind: 'reply', content: 'SCORE: 9' }));
    const answer = result(null, {
      finish_reason: 'tool_calls',
      message: {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup_order', arguments: '{"id":"12345"}' } }],
      },
    });
    await evaluator.evaluate(input(ask('Where is order 12345?'), answer), never());
    assert.match(fake.requests[0].body.messages[1].content, /lookup_order\(\{"id":"12345"\}\)/);
  });

  // Choice: a failed judge call rejects. The host scores an evaluator that throws as 0
  // (the answer escalates) and logs the message. The error must not be an
  // UpstreamError, or the host could blame the model that answered for the judge's failure.
  test('a failing judge rejects with a plain error that names the judge and keeps the cause', async () => {
    fake.behave(() => ({ kind: 'status', status: 503 }));
    const evaluator = await llmJudge.create({ model: 'judge' }, ctx);
    let caught: unknown;
    await assert.rejects(evaluator.evaluate(input(ask(QUESTION), result(ANSWER)), never()), (err: unknown) => {
      caught = err;
      return true;
    });
    assert.ok(caught instanceof Error);
    assert.equal(isUpstreamError(caught), false);
    assert.match(caught.message, /judge model "judge" failed: .*HTTP 503/);
    assert.ok(isUpstreamError(caught.cause), 'the provider error is kept as the cause');
  });

  test('the judge call follows the evaluation signal', async () => {
    fake.behave(() => ({ kind: 'hang' }));
    const evaluator = await llmJudge.create({ model: 'judge' }, ctx);
    const controller = new AbortController();
    const pending = evaluator.evaluate(input(ask(QUESTION), result(ANSWER)), controller.signal);
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(pending, /judge model "judge" failed/);
    await fake.waitForAborted(1);
  });

  test('parseVerdict keeps the reason short and on one line', () => {
    const verdict = parseVerdict(`SCORE: 7\nREASON: ${'long words '.repeat(100)}`);
    assert.ok('score' in verdict);
    assert.equal(verdict.score, 7);
    assert.ok(verdict.reason.length <= 201 && !verdict.reason.includes('\n'));
  });
});

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
