// The four built-in evaluators (quality gates), called directly: crafted answers for each
// rule, the simulator's own deficient answers (what a gate must catch on a fresh
// checkout), and real recorded answers of GPT-4 and Mixtral from ../shared/data, where
// a gate's verdict can be compared with the benchmark's recorded correctness.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import heuristics from '../../plugins/evaluators/heuristics/index.ts';
import jsonSchema from '../../plugins/evaluators/json_schema/index.ts';
import regex from '../../plugins/evaluators/regex/index.ts';
import jsonata from '../../plugins/evaluators/jsonata/index.ts';
import simulator from '../../plugins/providers/simulator/index.ts';
import { BUILTIN_PLUGIN_ROOT, discoverPlugins, loadPlugin } from '../../src/policy/plugins.ts';
import type {
  ChatChoice,
  ChatMessage,
  ChatResult,
  EvalInput,
  Evaluation,
  Evaluator,
  FinishReason,
  ModelSpec,
  PluginContext,
} from '../../src/plugin-sdk/plugin-api.ts';
import { testPluginContext } from '../support/plugin-context.ts';

const DATA = path.resolve(import.meta.dirname, '../../../shared/data');
const ROUTELLM = path.join(DATA, 'routellm_gpt4_vs_mixtral.jsonl');
const ROUTERBENCH = path.join(DATA, 'routerbench_subset_11models.jsonl');
/** The usual gate threshold: an answer "passes" an evaluator at or above it. */
const PASS = 0.5;

const model: ModelSpec = { name: 'small', provider: 'sim', upstream: 'sim-small', price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }, timeout_ms: 5000 };
const signal = new AbortController().signal;

function ctx(): PluginContext {
  return testPluginContext({ at: 'routes.r.gate.evaluators[0]' });
}

interface Case {
  answer: string | null;
  finish?: FinishReason | null;
  messages?: ChatMessage[];
  metadata?: Record<string, unknown>;
  features?: Record<string, unknown>;
  message?: Partial<ChatChoice['message']>;
}

function input(c: Case): EvalInput {
  const response: ChatResult = {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 0,
    model: model.upstream,
    choices: [{ index: 0, message: { role: 'assistant', content: c.answer, ...c.message }, finish_reason: c.finish === undefined ? 'stop' : c.finish }],
    usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
  };
  return {
    request: {
      model: 'support',
      messages: c.messages ?? [{ role: 'user', content: 'Tell me about the weather in Lisbon in spring.' }],
      parameters: {},
      metadata: c.metadata ?? {},
      headers: {},
      stream: false,
    },
    response,
    features: c.features ?? {},
    model,
  };
}

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

// ---------------------------------------------------------------------------------
// Real recorded answers (../shared/data)

interface Outcome {
  score: number | null;
  response?: string;
}
interface Row {
  id: string;
  source: string;
  prompt: string | ChatMessage[];
  reference_answer?: string;
  outcomes: Record<string, Outcome>;
}

function readRows(file: string, keep: (line: string) => boolean): Row[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '' && keep(line))
    .map((line) => JSON.parse(line) as Row);
}

let gsm8kRows: Row[] | null = null;
function gsm8k(t: TestContext): Row[] | null {
  if (!existsSync(ROUTELLM)) {
    t.skip(`recorded data not found at ${ROUTELLM}; the real-answer tests need ../shared/data`);
    return null;
  }
  // Only the gsm8k rows carry answers; skip parsing the 14k MMLU rows.
  gsm8kRows ??= readRows(ROUTELLM, (line) => line.includes('"source": "gsm8k"')).filter((row) => row.source === 'gsm8k');
  return gsm8kRows;
}

function messagesOf(prompt: Row['prompt']): ChatMessage[] {
  return typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
}

/** Every (row, model, answer) of the rows, with the reference in metadata as a team would pass it. */
function* answers(rows: Row[]): Generator<{ row: Row; name: string; outcome: Outcome; input: EvalInput }> {
  for (const row of rows) {
    for (const [name, outcome] of Object.entries(row.outcomes)) {
      if (typeof outcome.response !== 'string') continue;
      yield {
        row,
        name,
        outcome,
        input: input({ answer: outcome.response, messages: messagesOf(row.prompt), metadata: row.reference_answer ? { reference: row.reference_answer } : {} }),
      };
    }
  }
}

const share = (n: number, of: number) => Math.round((n / of) * 10000) / 10000;

// A gate a team could write in gateway.yaml for math word problems whose reference
// answer comes with the request: the answer's final number must equal the reference's.
// GSM8K references end with "#### <number>"; answers either use the same marker (then
// take the number after it) or end with the result (then take the last number).
const FINAL_NUMBER_GATE = `(
  $num := function($s) { $number($replace($s, ',', '')) };
  $ref := $num($trim($substringAfter(request.metadata.reference, '####')));
  $marked := $contains(answer, '####');
  $found := $match($marked ? $substringAfter(answer, '####') : answer, /-?\\d[\\d,]*(?:\\.\\d+)?/).match;
  $guess := $marked ? $found[0] : $found[-1];
  $exists($guess) and $abs($num($guess) - $ref) < 0.000001
)`;

describe('real recorded answers: RouteLLM GSM8K, GPT-4 and Mixtral', () => {
  test('heuristics passes nearly every real answer of both models (they are complete answers)', async (t) => {
    const rows = gsm8k(t);
    if (!rows) return;
    const e = await heuristics.create({}, ctx());
    const tally = new Map<string, { n: number; pass: number; perfect: number; failed: string[] }>();
    for (const { row, name, input: x } of answers(rows)) {
      const r = await e.evaluate(x, signal);
      const m = tally.get(name) ?? { n: 0, pass: 0, perfect: 0, failed: [] };
      m.n++;
      if (r.score >= PASS) m.pass++;
      if (r.score === 1) m.perfect++;
      else if (m.failed.length < 5) m.failed.push(`${row.id}: ${JSON.stringify(r.details)}`);
      tally.set(name, m);
    }
    assert.equal(tally.size, 2);
    for (const [name, m] of tally) {
      t.diagnostic(`heuristics on ${name}: ${m.pass}/${m.n} pass (${share(m.pass, m.n)}), ${m.perfect} score 1`);
      assert.equal(m.n, 1319);
      assert.ok(m.pass / m.n >= 0.99, `${name}: pass share ${share(m.pass, m.n)}; failures: ${m.failed.join('\n')}`);
    }
  });

  test('a jsonata final-number gate agrees with the recorded correctness (precision and recall of "pass")', async (t) => {
    const rows = gsm8k(t);
    if (!rows) return;
    const e = await jsonata.create({ expression: FINAL_NUMBER_GATE }, ctx());
    const stats = new Map<string, { tp: number; fp: number; fn: number; tn: number; errors: number; falsePassDecimal: number }>();
    for (const { row, name, outcome, input: x } of answers(rows)) {
      const r = await e.evaluate(x, signal);
      const s = stats.get(name) ?? { tp: 0, fp: 0, fn: 0, tn: 0, errors: 0, falsePassDecimal: 0 };
      if (r.details?.error !== undefined) s.errors++;
      const pass = r.score >= PASS;
      const correct = outcome.score === 1;
      if (pass && correct) s.tp++;
      else if (pass) {
        s.fp++;
        // The recorded grader marks "$20.00" wrong against "#### 20": count those.
        const reference = row.reference_answer!.split('####')[1].trim().replace(/,/g, '');
        if (new RegExp(`(?<![\\d.])${reference}\\.0+(?!\\d)`).test(outcome.response!.replace(/,/g, ''))) s.falsePassDecimal++;
      } else if (correct) s.fn++;
      else s.tn++;
      stats.set(name, s);
    }
    // Lower bounds a little under what was measured (Mixtral P 0.993 R 0.994; GPT-4 P 0.964 R 1.0).
    const bounds: Record<string, { precision: number; recall: number }> = {
      'mistralai/Mixtral-8x7B-Instruct-v0.1': { precision: 0.98, recall: 0.98 },
      'gpt-4-1106-preview': { precision: 0.95, recall: 0.99 },
    };
    assert.deepEqual([...stats.keys()].sort(), Object.keys(bounds).sort());
    for (const [name, s] of stats) {
      const precision = s.tp / (s.tp + s.fp);
      const recall = s.tp / (s.tp + s.fn);
      const n = s.tp + s.fp + s.fn + s.tn;
      t.diagnostic(
        `final-number gate on ${name}: precision ${share(s.tp, s.tp + s.fp)}, recall ${share(s.tp, s.tp + s.fn)}, agreement ${share(s.tp + s.tn, n)} ` +
          `(tp ${s.tp}, fp ${s.fp} of which ${s.falsePassDecimal} are "N.00" answers the recorded grader marked wrong, fn ${s.fn}, tn ${s.tn}, n ${n})`,
      );
      assert.equal(n, 1319);
      assert.equal(s.errors, 0, 'the expression never fails on a real answer');
      assert.ok(precision >= bounds[name].precision, `${name}: precision ${precision}`);
      assert.ok(recall >= bounds[name].recall, `${name}: recall ${recall}`);
    }
    // GPT-4 writes money as "$20.00"; every answer the gate passes but the record calls
    // wrong is one of those, so the gate's misses there are the recorded grader's.
    const gpt4 = stats.get('gpt-4-1106-preview')!;
    assert.equal(gpt4.falsePassDecimal, gpt4.fp);
  });

  test('regex on the same answers: every answer has a number; the "#### n" marker is a format, not correctness', async (t) => {
    const rows = gsm8k(t);
    if (!rows) return;
    const hasNumber = await regex.create({ must_match: ['\\d'], must_not_match: ['\\bas an ai\\b', "\\bI (?:can't|cannot) help\\b"] }, ctx());
    const marker = await regex.create({ must_match: ['####\\s*\\$?-?\\d'] }, ctx());
    const tally = new Map<string, { n: number; number: number; marker: number; correct: number }>();
    for (const { name, outcome, input: x } of answers(rows)) {
      const m = tally.get(name) ?? { n: 0, number: 0, marker: 0, correct: 0 };
      m.n++;
      if ((await hasNumber.evaluate(x, signal)).score === 1) m.number++;
      if ((await marker.evaluate(x, signal)).score === 1) m.marker++;
      if (outcome.score === 1) m.correct++;
      tally.set(name, m);
    }
    for (const [name, m] of tally) {
      t.diagnostic(`regex on ${name}: ${m.number}/${m.n} contain a number; ${m.marker} use the "#### n" marker; ${m.correct} recorded correct`);
      assert.equal(m.number, m.n, 'a GSM8K answer always has a number, and no real answer is a refusal');
    }
    // Mixtral was prompted few-shot with the marker and mostly keeps it; GPT-4 mostly does
    // not, yet is right more often: a format gate would escalate good GPT-4 answers.
    const mixtral = tally.get('mistralai/Mixtral-8x7B-Instruct-v0.1')!;
    const gpt4 = tally.get('gpt-4-1106-preview')!;
    assert.ok(mixtral.marker / mixtral.n > 0.85, `Mixtral marker share ${share(mixtral.marker, mixtral.n)}`);
    assert.ok(gpt4.marker / gpt4.n < 0.2, `GPT-4 marker share ${share(gpt4.marker, gpt4.n)}`);
    assert.ok(gpt4.correct > mixtral.correct);
  });
});

describe('real recorded answers: RouterBench (11 models, arc-challenge, winogrande, mbpp)', () => {
  test('heuristics: one-letter answers pass when the prompt asks for one; repetition flags only real generation loops', async (t) => {
    if (!existsSync(ROUTERBENCH)) {
      t.skip(`recorded data not found at ${ROUTERBENCH}; the real-answer tests need ../shared/data`);
      return;
    }
    const rows = readRows(ROUTERBENCH, () => true);
    const e = await heuristics.create({}, ctx());
    let letters = 0;
    let lettersPass = 0;
    let code = 0;
    const loops: Array<{ id: string; name: string; score: number | null; evidence: unknown }> = [];
    for (const { row, name, outcome, input: x } of answers(rows)) {
      if (row.source !== 'mbpp' && outcome.response!.trim().length > 3) continue;
      const r = await e.evaluate(x, signal);
      if (row.source === 'mbpp') {
        code++;
        const loop = (r.details?.failed as Array<{ check: string; evidence: unknown }> | undefined)?.find((f) => f.check === 'repetition');
        if (loop) loops.push({ id: row.id, name, score: outcome.score, evidence: loop.evidence });
      } else if (/^[A-E]$/.test(outcome.response!.trim())) {
        letters++;
        if (r.score === 1) lettersPass++;
      }
    }
    t.diagnostic(`one-letter answers scored 1: ${lettersPass}/${letters}; repetition flagged ${loops.length}/${code} mbpp answers: ${JSON.stringify(loops)}`);
    assert.ok(letters > 20000, `${letters} one-letter answers`);
    assert.equal(lettersPass, letters, 'the arc/winogrande prompts say "Print only a single choice … without explanation"');
    // Calibration of max_repeated_share (0.4): the flagged answers are the degenerate ones
    // (a number sequence or a word list repeated to the token limit), all recorded wrong;
    // long lists of similar test cases (code-llama, repeated share ≤ 0.37) are not flagged.
    assert.ok(loops.length >= 3 && loops.length <= 10, `${loops.length} loops`);
    assert.ok(
      loops.every((l) => l.score === 0),
      'every flagged loop is an answer the benchmark recorded as wrong',
    );
  });
});
