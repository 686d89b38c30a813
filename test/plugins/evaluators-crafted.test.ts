// The four built-in evaluators (quality gates), called directly on crafted answers for
// each rule and on the simulator's own deficient answers (what a gate must catch on a
// fresh checkout). The real recorded answers of ../shared/data are in evaluators.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import heuristics from '../../plugins/evaluators/heuristics/index.ts';
import jsonSchema from '../../plugins/evaluators/json_schema/index.ts';
import regex from '../../plugins/evaluators/regex/index.ts';
import jsonata from '../../plugins/evaluators/jsonata/index.ts';
import simulator from '../../plugins/providers/simulator/index.ts';
import { BUILTIN_PLUGIN_ROOT, discoverPlugins, loadPlugin } from '../../src/policy/plugins.ts';
import type { ChatMessage, Evaluation, Evaluator } from '../../src/plugin-contract/plugin-api.ts';
import { testPluginContext } from '../support/plugin-context.ts';
import { ctx, input, model, PASS, signal, type Case } from '../support/evaluators.ts';

const run = (evaluator: Evaluator, c: Case): Promise<Evaluation> => evaluator.evaluate(input(c), signal);

/** The names of the heuristics checks that fired. */
function failedChecks(evaluation: Evaluation): string[] {
  const failed = evaluation.details?.failed;
  return Array.isArray(failed) ? failed.map((f: { check: string }) => f.check) : [];
}

const GOOD =
  'Lisbon in spring is mild and sunny: daytime highs are around 18 to 22 °C, with occasional showers in March and April. ' +
  'Pack layers and a light rain jacket.';

// ---------------------------------------------------------------------------------
// heuristics

describe('heuristics', () => {
  test('a clean answer scores 1; details carry the length and finish reason, not the text', async () => {
    const e = await heuristics.create({}, ctx());
    const r = await run(e, { answer: GOOD });
    assert.equal(r.score, 1);
    assert.deepEqual(failedChecks(r), []);
    assert.equal(r.details?.chars, GOOD.length);
    assert.ok(!JSON.stringify(r.details).includes('Lisbon'), 'details never repeat the answer');
  });

  test('the simulator’s three deficient answers fail the gate; its competent answers and labels pass', async () => {
    // Drive the real simulator: a model of capability 0 answers every prompt deficiently,
    // one of capability 1 answers every prompt competently. The prompts span the
    // simulator's answer kinds (general, reasoning, code, risk, order status, labels).
    const prompts = [
      'What is a good name for a golden retriever puppy?',
      'Explain why the sky is blue.',
      'Where is my package? Order 12345',
      'Classify the sentiment of this review as positive, negative, or neutral: the food was great and the staff friendly.',
      'Classify this ticket: my refund never arrived and support was rude.',
      'Is this email spam? "You won a prize, click here to claim your reward."',
      'Write a function that reverses a linked list in Python.',
      'Compare the trade-offs of SQL and NoSQL databases step by step.',
      'Prove that the square root of 2 is irrational.',
      'What are the side effects of ibuprofen, and what dosage is safe?',
      'Summarise the plot of Hamlet in three sentences.',
      'My contractor breached our contract. Explain step by step what I need to prove in court.',
      'Calculate 17 * 23 and explain each step.',
      'How do I center a div in CSS?',
      'Translate "good morning" into French, German and Italian.',
      'Derive the derivative of x^3 + 2x and evaluate it at x = 2.',
      'Give me three tips for better sleep.',
      'Analyze the causes of the French Revolution.',
      'What is the capital of Australia?',
      'Why do cats purr? Also, how long do they live?',
    ];
    const provider = await simulator.create(
      {
        profiles: {
          incapable: { capability: 0, first_token_ms: 0, tokens_per_second: 1000 },
          capable: { capability: 1, first_token_ms: 0, tokens_per_second: 1000 },
        },
        time_scale: 0,
      },
      testPluginContext({ at: 'providers.sim' }),
    );
    const e = await heuristics.create({}, ctx());
    try {
      const kinds = new Set<string>();
      for (const prompt of prompts) {
        const messages: ChatMessage[] = [{ role: 'user', content: prompt }];
        for (const upstream of ['incapable', 'capable']) {
          const result = await provider.complete({ model: upstream, messages }, { model: { ...model, upstream }, signal });
          const choice = result.choices[0];
          const r = await run(e, { answer: choice.message.content, finish: choice.finish_reason, messages });
          const shown = `${upstream} on ${JSON.stringify(prompt)} → ${JSON.stringify(choice.message.content)} (${choice.finish_reason}): ${JSON.stringify(r)}`;
          if (upstream === 'capable') {
            assert.equal(r.score, 1, shown);
            continue;
          }
          assert.ok(r.score < PASS, shown);
          // Which deficiency the simulator chose, so the test can show it met all three.
          const kind = choice.finish_reason === 'length' ? 'truncated' : /sorry/i.test(choice.message.content ?? '') ? 'refusal' : 'hedge';
          kinds.add(kind);
          assert.ok(failedChecks(r).includes(kind), shown);
        }
      }
      assert.deepEqual([...kinds].sort(), ['hedge', 'refusal', 'truncated'], 'the prompts exercised every deficiency the simulator produces');
    } finally {
      await provider.dispose();
    }
  });

  test('the simulator’s exact deficient texts, and their scores', async () => {
    const e = await heuristics.create({}, ctx());
    const hedge = await run(e, { answer: "I'm not entirely sure, but it might be something to do with golden retriever puppy." });
    assert.deepEqual(failedChecks(hedge), ['hedge']);
    assert.equal(hedge.score, 0.4);
    const refusal = await run(e, { answer: 'I’m sorry, but I can’t help with that.' }); // curly apostrophes too
    assert.deepEqual(failedChecks(refusal), ['refusal']);
    assert.equal(refusal.score, 0.1);
    const cut = await run(e, { answer: 'Thanks for asking about golden retriever puppy. The short answer is that it comes down to', finish: 'length' });
    assert.deepEqual(failedChecks(cut), ['truncated']);
    assert.equal(cut.score, 0.3);
  });

  test('refusals: built-in phrasings, the refusal field, an apology alone; not a passing "cannot" in a real answer', async () => {
    const e = await heuristics.create({}, ctx());
    for (const answer of [
      'As an AI language model, I cannot provide medical diagnoses. Please see a doctor.',
      'I cannot assist with that request.',
      'I must decline to answer this question.',
    ]) {
      assert.deepEqual(failedChecks(await run(e, { answer })), ['refusal'], answer);
    }
    // claude-v2's whole answer to one RouterBench question; it is also too short.
    const apology = await run(e, { answer: 'I apologize.' });
    assert.deepEqual(failedChecks(apology), ['refusal', 'too_short']);
    assert.equal(apology.score, 0.06, 'penalties multiply: 0.1 × 0.6');
    const field = await run(e, { answer: null, message: { refusal: 'I can not help with making weapons.' } });
    assert.deepEqual(failedChecks(field), ['refusal'], 'OpenAI’s message.refusal counts, and an empty content with it is not also "empty"');
    // A long answer that says "cannot" past its opening is not a refusal.
    const answer =
      `${GOOD} Evenings cool down quickly near the river, so a sweater helps after sunset. ` +
      "Note that forecasts cannot be certain more than a week ahead, and I can't help with the exact day.";
    assert.deepEqual(failedChecks(await run(e, { answer })), []);
    // "I'm sorry to hear…" opens many good support answers.
    assert.equal((await run(e, { answer: "I'm sorry to hear your order is late. It shipped yesterday and should arrive by Friday." })).score, 1);
  });

  test('hedges: explicit ones anywhere; soft ones only when dense', async () => {
    const e = await heuristics.create({}, ctx());
    assert.deepEqual(failedChecks(await run(e, { answer: `${GOOD} Honestly, I don't know if that holds in May.` })), ['hedge']);
    // One "might be" in a substantive answer is normal careful writing.
    assert.deepEqual(failedChecks(await run(e, { answer: `${GOOD} It might be cooler by the sea.` })), []);
    const dense = await run(e, { answer: 'Perhaps it is sunny. Maybe it rains. It could be windy, possibly cold.' });
    assert.deepEqual(failedChecks(dense), ['hedge']);
    assert.match(String((dense.details?.failed as Array<{ evidence: string }>)[0].evidence), /4 soft hedges in 13 words/);
  });

  test('empty, tool calls, content filter and repetition loops', async () => {
    const e = await heuristics.create({}, ctx());
    assert.equal((await run(e, { answer: '   ' })).score, 0);
    assert.deepEqual(failedChecks(await run(e, { answer: null })), ['empty']);
    const toolCall = await run(e, {
      answer: null,
      finish: 'tool_calls',
      message: { tool_calls: [{ id: 't1', type: 'function', function: { name: 'lookup_order', arguments: '{"id":"12345"}' } }] },
    });
    assert.equal(toolCall.score, 1, 'a tool call is an answer, however short its text');
    assert.deepEqual(failedChecks(await run(e, { answer: GOOD, finish: 'content_filter' })), ['filtered']);
    const loop = `${GOOD} ${'The answer is the answer because the answer is what it is. '.repeat(12)}`;
    const looped = await run(e, { answer: loop });
    assert.deepEqual(failedChecks(looped), ['repetition']);
    assert.equal(looped.score, 0.3);
    // Checks combine multiplicatively: truncated (0.3) × repetition (0.3).
    assert.equal((await run(e, { answer: loop, finish: 'length' })).score, 0.09);
  });

  test('short answers: moderate without a cue, full marks when the prompt or short_ok_when asks for one', async () => {
    const e = await heuristics.create({ min_chars: 20 }, ctx());
    const short = await run(e, { answer: 'Sunny.' });
    assert.deepEqual(failedChecks(short), ['too_short']);
    assert.equal(short.score, 0.6, 'suspicious, but above a 0.5 gate: a short answer alone does not escalate');
    const label = await run(e, {
      answer: 'B',
      messages: [{ role: 'user', content: 'Which is heavier?\nA) feather\nB) brick\nPrint only a single choice from "A" or "B" without explanation.' }],
    });
    assert.equal(label.score, 1);
    assert.match(String(label.details?.short_ok), /prompt asks for a short answer/);
    const viaSystem = await run(e, {
      answer: 'billing',
      messages: [
        { role: 'system', content: 'Reply with a single word: the category.' },
        { role: 'user', content: 'I was charged twice.' },
      ],
    });
    assert.equal(viaSystem.score, 1, 'the system prompt can ask for the short answer');

    const withRule = await heuristics.create({ short_ok_when: "request.metadata.task_type = 'classification' or features.expects_short" }, ctx());
    assert.equal((await run(withRule, { answer: 'billing', metadata: { task_type: 'classification' } })).score, 1);
    assert.equal((await run(withRule, { answer: 'billing', features: { expects_short: true } })).score, 1);
    assert.equal((await run(withRule, { answer: 'billing' })).score, 0.6, 'with short_ok_when given, it alone decides');
    const broken = await heuristics.create({ short_ok_when: '$error("no rule")' }, ctx());
    const r = await run(broken, { answer: 'billing' });
    assert.equal(r.score, 0.6);
    assert.match(String(r.details?.short_ok_when_error), /no rule/);
  });

  test('options: extra patterns, penalties, and a located error for a bad pattern', async () => {
    const e = await heuristics.create(
      { refusal_patterns: ['\\bnot authori[sz]ed\\b'], hedge_patterns: ['\\bno guarantees\\b'], penalties: { hedge: 0.2, too_short: 0 } },
      ctx(),
    );
    assert.deepEqual(failedChecks(await run(e, { answer: 'You are not authorized to see this record.' })), ['refusal']);
    const hedged = await run(e, { answer: `${GOOD} No guarantees, though.` });
    assert.deepEqual(failedChecks(hedged), ['hedge']);
    assert.equal(hedged.score, 0.8);
    assert.equal((await run(e, { answer: 'Sunny.' })).score, 1, 'penalty 0 turns a check off');
    await assert.rejects(heuristics.create({ hedge_patterns: ['ok', '(unclosed'] }, ctx()), /^Error: hedge_patterns\.1: not a valid regular expression/);
  });
});

// ---------------------------------------------------------------------------------
// json_schema

describe('json_schema', () => {
  const schema = {
    type: 'object',
    required: ['label', 'confidence'],
    additionalProperties: false,
    properties: { label: { enum: ['positive', 'negative', 'neutral'] }, confidence: { type: 'number', minimum: 0, maximum: 1 } },
  };

  test('valid JSON: whole, fenced, embedded in text', async () => {
    const e = await jsonSchema.create({ schema }, ctx());
    const whole = await run(e, { answer: '{"label":"positive","confidence":0.9}' });
    assert.deepEqual(whole, { score: 1, details: { json_from: 'whole' } });
    const fenced = await run(e, { answer: 'Here you go:\n```json\n{"label": "negative", "confidence": 0.7}\n```\nAnything else?' });
    assert.deepEqual(fenced, { score: 1, details: { json_from: 'fence' } });
    const embedded = await run(e, { answer: 'The result is {"label": "neutral", "confidence": 0.5} as requested.' });
    assert.deepEqual(embedded, { score: 1, details: { json_from: 'embedded' } });
    // The first value that validates wins over an earlier one that only parses.
    const second = await run(e, { answer: 'Draft: {"label": "maybe"}. Final: {"label": "neutral", "confidence": 0.4}' });
    assert.equal(second.score, 1);
  });

  test('strict extraction wants the answer to be the JSON', async () => {
    const e = await jsonSchema.create({ schema, extract: 'strict' }, ctx());
    assert.equal((await run(e, { answer: '  {"label":"positive","confidence":1}\n' })).score, 1);
    const fenced = await run(e, { answer: '```json\n{"label":"positive","confidence":1}\n```' });
    assert.equal(fenced.score, 0);
    assert.match(String(fenced.details?.error), /^the answer is not JSON: /);
  });

  test('parses but does not validate: partial credit below 0.5 and the first errors', async () => {
    const e = await jsonSchema.create({ schema }, ctx());
    const r = await run(e, { answer: '{"label": "great", "extra": 1}' });
    assert.equal(r.score, 0.25, 'one of two required keys present: 0.5 × 1/2');
    assert.equal(r.details?.required_present, '1/2');
    assert.equal(r.details?.error_count, 3);
    assert.deepEqual(r.details?.errors, [
      "(root) must have required property 'confidence'",
      '(root) must NOT have additional properties "extra"',
      '/label must be equal to one of the allowed values',
    ]);
    assert.equal((await run(e, { answer: '[1, 2]' })).score, 0, 'an array where an object is required gets no credit');
  });

  test('no JSON, no text: 0 with the reason', async () => {
    const e = await jsonSchema.create({ schema }, ctx());
    const prose = await run(e, { answer: 'The sentiment is positive.' });
    assert.equal(prose.score, 0);
    assert.match(String(prose.details?.error), /^no JSON value found in the answer/);
    assert.equal((await run(e, { answer: '{"label": "positive", "confidence": ', finish: 'length' })).score, 0, 'truncated JSON does not parse');
    const none = await run(e, { answer: null });
    assert.deepEqual(none, { score: 0, details: { error: 'the answer has no text to parse as JSON', extract: 'lenient' } });
  });

  test('an invalid schema is an error located at the schema option', async () => {
    await assert.rejects(
      jsonSchema.create({ schema: { type: 'object', properties: { n: { type: 'integr' } } } }, ctx()),
      /^Error: schema: not a valid JSON Schema: .*type/,
    );
    await assert.rejects(
      jsonSchema.create({ schema: { $ref: '#/definitions/missing' } }, ctx()),
      /^Error: schema: not a valid JSON Schema: can't resolve reference/,
    );
  });
});

// ---------------------------------------------------------------------------------
// regex

describe('regex', () => {
  test('score is the share of must_match that match; a must_not_match hit vetoes', async () => {
    const e = await regex.create({ must_match: ['order\\s+#?\\d+', 'business days', 'tracking'], must_not_match: ['as an ai'] }, ctx());
    const all = await run(e, { answer: 'Order #12345 ships in 2 business days; the tracking link is in your email.' });
    assert.deepEqual(all, { score: 1, details: { must_match: '3/3' } });
    const two = await run(e, { answer: 'ORDER 12345 ships in 2 business days.' });
    assert.deepEqual(two, { score: 0.667, details: { must_match: '2/3', missing: ['tracking'] } });
    const vetoed = await run(e, { answer: 'As an AI, I think order 12345 ships in 2 business days; see tracking.' });
    assert.deepEqual(vetoed, { score: 0, details: { must_match: '3/3', forbidden: ['as an ai'] } });
    assert.equal((await run(e, { answer: null, finish: 'tool_calls' })).score, 0, 'no text: every required pattern is missing');
  });

  test('flags: case-sensitive when flags is empty', async () => {
    const e = await regex.create({ must_not_match: ['SECRET'], flags: '' }, ctx());
    assert.equal((await run(e, { answer: 'a secret' })).score, 1);
    assert.equal((await run(e, { answer: 'a SECRET' })).score, 0);
  });

  test('a bad pattern is an error located at its index; bad flags at flags; no rules is a validate issue', async () => {
    await assert.rejects(regex.create({ must_match: ['a', 'b', '(unclosed'] }, ctx()), /^Error: must_match\.2: not a valid regular expression: /);
    await assert.rejects(regex.create({ must_not_match: ['[z-a]'] }, ctx()), /^Error: must_not_match\.0: not a valid regular expression: /);
    await assert.rejects(regex.create({ must_match: ['a'], flags: 'ii' }, ctx()), /^Error: flags: not valid RegExp flags/);
    const issues = regex.validate({ must_match: [] });
    assert.equal(issues.length, 1);
    assert.match(issues[0].message, /at least one pattern/);
  });
});

// ---------------------------------------------------------------------------------
// jsonata

describe('jsonata', () => {
  const make = (expression: string) => jsonata.create({ expression }, ctx());

  test('booleans and numbers become scores; out-of-range numbers are clamped', async () => {
    assert.deepEqual(await run(await make("finish_reason = 'stop'"), { answer: GOOD }), { score: 1, details: { result: true } });
    assert.deepEqual(await run(await make("finish_reason = 'stop'"), { answer: GOOD, finish: 'length' }), { score: 0, details: { result: false } });
    assert.deepEqual(await run(await make('$length(answer) / 1000'), { answer: 'x'.repeat(250) }), { score: 0.25, details: { result: 0.25 } });
    assert.deepEqual(await run(await make('1.5'), { answer: GOOD }), { score: 1, details: { result: 1.5, clamped: true } });
    assert.deepEqual(await run(await make('-2'), { answer: GOOD }), { score: 0, details: { result: -2, clamped: true } });
  });

  test('it sees request, response, features, model and messages', async () => {
    const e = await make(
      "request.metadata.tier = 'gold' and features.lang = 'en' and model.name = 'small' and response.usage.total_tokens = 20 and $contains($lastUserMessage(), 'Lisbon')",
    );
    assert.equal((await run(e, { answer: GOOD, metadata: { tier: 'gold' }, features: { lang: 'en' } })).score, 1);
    assert.equal((await run(e, { answer: GOOD, metadata: { tier: 'free' }, features: { lang: 'en' } })).score, 0);
  });

  test('nothing, the wrong type, or an error scores 0 with the reason', async () => {
    const missing = await run(await make('request.metadata.nope'), { answer: GOOD });
    assert.equal(missing.score, 0);
    assert.match(String(missing.details?.error), /returned nothing \(undefined\)/);
    const text = await run(await make('answer'), { answer: GOOD });
    assert.equal(text.score, 0);
    assert.match(String(text.details?.error), /returned a string; expected a number in \[0, 1\] or a boolean/);
    const thrown = await run(await make('$error("gate is broken")'), { answer: GOOD });
    assert.equal(thrown.score, 0);
    assert.match(String(thrown.details?.error), /gate is broken/);
    const typeError = await run(await make('answer + 1'), { answer: GOOD });
    assert.equal(typeError.score, 0);
    assert.match(String(typeError.details?.error), /failed/);
  });
});

test('option schemas reject what create never sees: typos in nested keys, stateful regex flags', async () => {
  const catalogue = discoverPlugins([BUILTIN_PLUGIN_ROOT]);
  const load = async (name: string) => (await loadPlugin(catalogue.get('evaluator', name)!)).validateOptions;
  assert.equal((await load('heuristics'))({ penalties: { hedging: 0.5 } }), false);
  assert.equal((await load('regex'))({ must_match: ['a'], flags: 'g' }), false);
  assert.equal((await load('json_schema'))({ schema: {}, extract: 'loose' }), false);
  assert.equal((await load('jsonata'))({}), false);
});
