// The agreement evaluator's parts: reading final answers by type (src/plugin-contract/answers.ts) on crafted
// replies in the shapes models write, and the evaluator called directly with a
// callModel that records what the second call was. Over HTTP: agreement-http.test.ts;
// on recorded real answers: agreement-recorded.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import agreement from '../../plugins/evaluators/agreement/index.ts';
import {
  choicePrompt,
  compareAnswers,
  detectType,
  extractChoice,
  extractCode,
  extractJson,
  extractNumber,
  tokenF1,
} from '../../src/plugin-contract/answers.ts';
import type { ChatRequest, ChatResult, PluginContext } from '../../src/plugin-contract/plugin-api.ts';
import { testPluginContext } from '../support/plugin-context.ts';
import { input, never, result, spec } from '../support/model-evaluators.ts';

const MC = 'Which planet is largest?\nA) Mars\nB) Jupiter\nC) Venus\nD) Earth\nAnswer with the letter.';

describe('extract: multiple choice', () => {
  test('the options of the last question, also in few-shot prompts', () => {
    const fewShot = `Q1\nA) x\nB) y\nC) z\nAnswer:\nB\n\n${MC}`;
    assert.deepEqual(choicePrompt(fewShot)?.letters, ['A', 'B', 'C', 'D']);
    assert.deepEqual(choicePrompt('Who?\nA) Ian\nB) Dennis\nPrint only a single choice')?.letters, ['A', 'B']);
    assert.equal(choicePrompt('Write a haiku about autumn.'), null);
  });

  test('the letter in the shapes models write it', () => {
    const p = choicePrompt(MC);
    for (const reply of [
      'B',
      ' b\n',
      '(B)',
      '**B**',
      'B.',
      'B) Jupiter',
      'Answer: B',
      'The answer is (B).',
      'Jupiter is the largest, so the correct answer is B',
      'Jupiter',
    ])
      assert.equal(extractChoice(reply, p), 'B', reply);
  });

  test('no letter, a letter that is not an option, or an article is not an answer', () => {
    const p = choicePrompt('Who?\nA) Ian\nB) Dennis');
    assert.equal(extractChoice('D', p), null, 'D is not among A–B');
    assert.equal(extractChoice('Rober', p), null);
    assert.equal(extractChoice('The answer is a difficult one.', p), null);
    assert.equal(extractChoice('A boat sails north.', choicePrompt(MC)), null, '"A " opening a sentence is an article');
  });

  test('two replies agree on the same letter only', () => {
    assert.equal(compareAnswers('choice', MC, 'B', 'The answer is B.', 0.6).agree, true);
    assert.equal(compareAnswers('choice', MC, 'B', 'C', 0.6).agree, false);
    assert.equal(compareAnswers('choice', MC, 'I am not sure.', 'I am not sure.', 0.6).agree, false, 'no letter on either side confirms nothing');
  });
});

describe('extract: numbers', () => {
  test('the final number: #### marker, boxed, stated answer, else the last number; normalised', () => {
    assert.equal(extractNumber('She has 3 bags of 14.\n#### 42'), 42);
    assert.equal(extractNumber('So $\\boxed{12}$ apples, from 3 trees.'), 12);
    assert.equal(extractNumber('The answer is 1,250 dollars, spent over 3 days.'), 1250);
    assert.equal(extractNumber('5 + 7 = 12 and then 12 * 2 = 24'), 24);
    assert.equal(extractNumber('It costs $7.50'), 7.5);
    assert.equal(extractNumber('-3 degrees'), -3);
    assert.equal(extractNumber('no digits here'), null);
  });

  test('written differently, the same value agrees; a different value does not', () => {
    const prompt = 'How many eggs?';
    assert.equal(compareAnswers('number', prompt, 'The answer is 42', '#### 42', 0.6).agree, true);
    assert.equal(compareAnswers('number', prompt, 'Total: 1,000.00', '#### 1000', 0.6).agree, true);
    assert.equal(compareAnswers('number', prompt, 'The answer is 41', '#### 42', 0.6).agree, false);
    assert.equal(compareAnswers('number', prompt, 'I cannot tell', '#### 42', 0.6).agree, false);
  });
});

describe('extract: code, JSON and text', () => {
  test('code: comments and layout do not matter; another language is another program', () => {
    const a = '```python\ndef add(a, b):\n    # sum them\n    return a + b\n```';
    const b = 'Here you go:\n```py\ndef add(a, b):\n\n  return a + b   # done\n```\nHope it helps.';
    assert.equal(extractCode(a)?.normalised, 'def add(a, b):\nreturn a + b');
    assert.equal(compareAnswers('code', 'Write add.', a, b, 0.6).agree, true);
    const js = '```javascript\nfunction add(a, b) { return a + b; }\n```';
    assert.equal(compareAnswers('code', 'Write add.', a, js, 0.1).agree, false);
    const other = '```python\nimport operator\nadd = operator.add\n```';
    const far = compareAnswers('code', 'Write add.', a, other, 0.6);
    assert.equal(far.agree, false);
    assert.ok((far.similarity ?? 1) < 0.6);
  });

  test('JSON: compared structurally (key order and spacing do not matter)', () => {
    assert.deepEqual(extractJson('Sure: ```json\n{"ok": true}\n```'), { ok: true });
    assert.equal(extractJson('no json'), undefined);
    assert.equal(compareAnswers('json', 'p', '{"a":1,"b":[1,2]}', 'Result: {"b": [1, 2], "a": 1}', 0.6).agree, true);
    assert.equal(compareAnswers('json', 'p', '{"a":1}', '{"a":2}', 0.6).agree, false);
  });

  test('text: token F1 after normalising case, punctuation, accents and articles', () => {
    assert.equal(tokenF1(['a', 'b'], ['a', 'b']), 1);
    assert.equal(tokenF1(['a'], ['b']), 0);
    const same = compareAnswers('text', 'Capital of France?', 'The capital is Paris.', 'capital is paris', 0.6);
    assert.equal(same.agree, true);
    assert.equal(same.similarity, 1);
    assert.equal(compareAnswers('text', 'Capital of France?', 'Paris', 'Lyon', 0.6).agree, false);
  });

  test('auto: the type from the prompt and the replies', () => {
    assert.equal(detectType(MC, 'B'), 'choice');
    assert.equal(detectType('Write add.', '```python\ndef add(a, b): return a + b\n```'), 'code');
    assert.equal(detectType('Give JSON.', '```json\n{"a": 1}\n```'), 'json');
    assert.equal(detectType('Give JSON.', '{"a": 1}'), 'json');
    assert.equal(detectType('Eggs?', 'So she has 42'), 'number');
    assert.equal(detectType('Eggs?', 'Seven boxes: 42 eggs.', '#### 42'), 'number', 'either reply can show the number');
    assert.equal(detectType('How many eggs in 7 boxes of 6?', 'There are 42 eggs in total.'), 'number');
    assert.equal(detectType('Classify: "my parcel never arrived"', 'negative'), 'text');
  });
});

describe('the evaluator, called directly', () => {
  const answering = spec('small-model', 'up-small');
  const calls: Array<{ model: string; request: Omit<ChatRequest, 'model'>; signal: AbortSignal }> = [];
  let second = '#### 42';
  const callModel: PluginContext['callModel'] = async (model, request, signal) => {
    calls.push({ model, request, signal });
    const reply: ChatResult = { ...result(second), usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 } };
    return reply;
  };
  const ctx = testPluginContext({ at: 'routes.r.gate.evaluators[0]', callModel });
  const ask = (content: string, parameters: Record<string, unknown> = {}) => {
    const x = input([{ role: 'user', content }], result('The answer is 42'), answering);
    return { ...x, request: { ...x.request, parameters } };
  };

  test('agreeing answers score 1, with the second call as spent; differing ones 0', async () => {
    calls.length = 0;
    const evaluator = await agreement.create({ model: 'other-cheap' }, ctx);
    assert.equal(calls.length, 0, 'create calls no model');
    second = '#### 42';
    const pass = await evaluator.evaluate(ask('How many?', { temperature: 0.3, seed: 1, n: 2, max_tokens: 50 }), never());
    assert.equal(pass.score, 1);
    assert.deepEqual(pass.spent, [{ model: 'other-cheap', usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 } }]);
    assert.deepEqual(pass.details, { second_model: 'other-cheap', type: 'number', first: '42', second: '42', agree: true });
    assert.equal(calls[0].model, 'other-cheap');
    assert.deepEqual(
      calls[0].request,
      { temperature: 0.3, max_tokens: 50, messages: [{ role: 'user', content: 'How many?' }] },
      'n and seed stay with the first call',
    );
    second = '#### 41';
    assert.equal((await evaluator.evaluate(ask('How many?'), never())).score, 0);
    await evaluator.dispose();
    await evaluator.dispose();
  });

  test('the signal reaches the second call; an aborted or failing call rejects with a plain Error', async () => {
    calls.length = 0;
    const evaluator = await agreement.create({}, ctx);
    const controller = new AbortController();
    await evaluator.evaluate(ask('How many?'), controller.signal);
    assert.equal(calls[0].signal, controller.signal);
    assert.equal(calls[0].model, 'small-model', 'without model: the model that answered');
    assert.equal(calls[0].request.temperature, 1);
    controller.abort(new Error('client went away'));
    await assert.rejects(evaluator.evaluate(ask('How many?'), controller.signal), /agreement model "small-model" failed: client went away/);
    assert.equal(calls.length, 1, 'no call once aborted');
    const failing = await agreement.create(
      { model: 'down' },
      testPluginContext({
        at: 'r',
        callModel: async () => {
          throw new Error('HTTP 503');
        },
      }),
    );
    await assert.rejects(failing.evaluate(ask('How many?'), never()), (err: Error) => err.name === 'Error' && /"down" failed: HTTP 503/.test(err.message));
  });
});
