// llm_judge: a second model grades the answer. The judge is a real provider call — the
// openai plugin against the local fake-openai server — never a mock of tiergate's code.
// llm_judge in a real runtime, logprob and order_status are in evaluators-model.test.ts.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import llmJudge, { DEFAULT_RUBRIC, judgeMessages, parseVerdict } from '../../plugins/evaluators/llm_judge/index.ts';
import openaiPlugin from '../../plugins/providers/openai/index.ts';
import { isUpstreamError, type ChatRequest, type ChatResult, type PluginContext, type Provider } from '../../src/plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens } from '../../src/plugin-contract/tokens.ts';
import { testPluginContext } from '../support/plugin-context.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { ask, input, never, result, spec } from '../support/model-evaluators.ts';

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
