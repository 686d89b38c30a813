// heuristics on short answers (issue 16): a short answer of a recognisable form, or one
// the prompt does not ask to elaborate, is complete and scores 1, so that a gate at the
// shipped 0.8 does not escalate it; a short answer that carries no answer, stops
// mid-phrase, is not the letter the prompt asks for, or is a bare phrase where the prompt
// asked for an explanation still fails. The recorded real answers are in
// heuristics-recorded.test.ts; the other checks in evaluators-crafted.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import heuristics from '../../plugins/evaluators/heuristics/index.ts';
import type { ChatMessage, Evaluation } from '../../src/plugin-contract/plugin-api.ts';
import { ctx, input, signal } from '../support/evaluators.ts';

/** The shipped support route's gate: costs 4:1 give a threshold of 0.8. */
const SHIPPED_GATE = 0.8;

const user = (content: string): ChatMessage[] => [{ role: 'user', content }];

async function score(answer: string, messages: ChatMessage[], options = {}): Promise<Evaluation> {
  const e = await heuristics.create(options, ctx());
  return e.evaluate(input({ answer, messages }), signal);
}

function failedChecks(evaluation: Evaluation): string[] {
  const failed = evaluation.details?.failed;
  return Array.isArray(failed) ? failed.map((f: { check: string }) => f.check) : [];
}

describe('heuristics: short answers that are complete pass a 0.8 gate, with no cue in the prompt', () => {
  const mmlu = user(
    'Statement 1 | Every group of order 4 is cyclic. Statement 2 | Z_4 is cyclic.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:',
  );
  const cases: Array<[string, string, ChatMessage[]]> = [
    ['a JSON object', '{"ok":true}', user('Is the service healthy? Reply in JSON.')],
    ['a JSON object (no format asked)', '{"ok":true}', user('Check the order and tell the client.')],
    ['a JSON array', '["a","b"]', user('Which keys are missing?')],
    ['an empty JSON array', '[]', user('Which of these accounts are overdue?')],
    ['a number', '18', user('Janet’s ducks lay 16 eggs per day… How much does she make every day?')],
    ['an amount', '$18.00', user('How much does she make every day?')],
    ['a negative decimal', '-3.5', user('What is 1.5 - 5?')],
    ['a single letter', 'D', mmlu],
    ['a bracketed choice', '(B)', mmlu],
    ['a choice with a prefix', 'Answer: B', mmlu],
    ['a choice in a sentence', 'The answer is (C).', mmlu],
    ['a choice with its option', 'B) False, False', mmlu],
    ['a choice whose explanation was cut', 'D (', mmlu],
    ['a one-word label', 'negative', user('my parcel never arrived')],
    ['a label asked for in metadata only', 'billing', user('I was charged twice for one order.')],
    ['a name', 'Canberra', user('What is the capital of Australia?')],
    ['yes', 'Yes.', user('Do you ship to Canada?')],
    ['an elliptical answer', 'Yes, we do', user('Do you ship to Canada?')],
    ['a status label', 'Log in', user('Which button should the user press first?')],
    ['a plan letter', 'Plan A', user('Which plan includes phone support?')],
    ['a code snippet', 's[::-1]', user('Write a python function to reverse a string.')],
    ['a call', 'sorted(xs)', user('Write a function that sorts a list.')],
    ['inline code', '`len(s)`', user('How do I get the length of a string in Python?')],
    ['SQL', 'SELECT * FROM t;', user('Write a query that returns every row of t.')],
    ['a translation', 'Thanks', user('Translate "gracias" into English.')],
    ['a short answer to an explanation asked for in one word', 'Rayleigh', user('Explain in one word why the sky is blue.')],
  ];
  for (const [name, answer, messages] of cases) {
    test(`${name}: ${JSON.stringify(answer)}`, async () => {
      const r = await score(answer, messages);
      assert.equal(r.score, 1, `${JSON.stringify(r.details)}`);
      assert.ok(r.score >= SHIPPED_GATE);
      assert.equal(typeof r.details?.short_ok, 'string', 'details say why a short answer is fine');
    });
  }

  test('a maybe inside a JSON answer is a value, not a hedge', async () => {
    const r = await score('["maybe","perhaps"]', user('Classify each reply as yes, no, maybe or perhaps.'));
    assert.equal(r.score, 1);
    // The same words in prose are still dense soft hedges.
    assert.deepEqual(failedChecks(await score('Maybe. Perhaps. It could be.', user('Will it arrive today?'))), ['hedge']);
  });
});

describe('heuristics: short answers that are not answers still fail a 0.8 gate', () => {
  const arc = user(
    'Which skin surface will produce the most heat?\nA) dry palms\nB) wet palms\nC) palms covered with oil\nD) palms covered with lotion\n' +
      'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.\nAnswer:',
  );
  const cases: Array<[string, string, ChatMessage[], RegExp]> = [
    ['an acknowledgement', 'Sure!', user('What is your refund policy?'), /no answer in it/],
    ['a preamble whose content never came', 'Here is the code:', user('Write a function to add two numbers.'), /no answer in it/],
    ['a fragment', 'Based on the', user('What is your refund policy?'), /stops mid-phrase/],
    ['a fragment ending on a comma', 'Okay,', user('Which option is right?'), /stops mid-phrase/],
    // RouterBench's claude-v2 answers 658 train-split ARC questions with these two words.
    ['two words where the prompt asks for a letter', 'I do', arc, /not the letter the prompt asks for/],
    ['the option’s text where the prompt asks for its letter', 'dry palms', arc, /not the letter the prompt asks for/],
    ['a bare phrase where the prompt asks for an explanation', 'Rayleigh scattering', user('Explain why the sky is blue.'), /asks for an elaboration/],
    ['a bare word where the prompt asks for a post', 'Hawaii', user('Compose an engaging travel blog post about a trip to Hawaii.'), /asks for an elaboration/],
    ['a bare word where the prompt asks for a post (polite)', 'Hawaii', user('Hi! Can you write a blog post about Hawaii?'), /asks for an elaboration/],
  ];
  for (const [name, answer, messages, why] of cases) {
    test(`${name}: ${JSON.stringify(answer)}`, async () => {
      const r = await score(answer, messages);
      assert.deepEqual(failedChecks(r), ['too_short'], JSON.stringify(r.details));
      assert.equal(r.score, 0.6);
      assert.ok(r.score < SHIPPED_GATE);
      const evidence = (r.details?.failed as Array<{ evidence: string }>)[0].evidence;
      assert.match(evidence, why);
      assert.match(evidence, new RegExp(`^${answer.length} chars`));
    });
  }

  test('"describes" inside a question is not a request to elaborate', async () => {
    const r = await score('Friction', user('Which word best describes the force that slows a sliding box?'));
    assert.equal(r.score, 1);
  });

  test('short_ok_when is the last word: it lets any short answer through, and replaces the prompt’s own cues', async () => {
    const options = { short_ok_when: "request.metadata.task_type = 'classification'" };
    const e = await heuristics.create(options, ctx());
    const asLabel = await e.evaluate(
      input({ answer: 'Sure', messages: user('Is this message a greeting or a request?'), metadata: { task_type: 'classification' } }),
      signal,
    );
    assert.equal(asLabel.score, 1, 'the policy says a short answer is wanted here: "Sure" may be a label');
    // Without the policy's word, the prompt's "translate" no longer excuses an answer with nothing in it…
    const r = await e.evaluate(input({ answer: 'Sure', messages: user('Translate "claro" into English.') }), signal);
    assert.deepEqual(failedChecks(r), ['too_short']);
    // …but a short answer of a complete form still passes.
    assert.equal((await e.evaluate(input({ answer: '{"ok":true}', messages: user('Explain the status.') }), signal)).score, 1);
  });

  test('min_chars still bounds what counts as short', async () => {
    assert.equal((await score('Rayleigh scattering', user('Explain why the sky is blue.'), { min_chars: 10 })).score, 1);
    assert.equal((await score('Sure!', user('Explain why the sky is blue.'), { min_chars: 0 })).score, 1);
  });
});
