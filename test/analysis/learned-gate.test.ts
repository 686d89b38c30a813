// The learned gate's parts without HTTP: the measures of an answer (answer-features.ts),
// training (gate-model.ts) on answers whose quality follows a measure, the artifact's
// checks, and `tiergate train --gate` writing an artifact the evaluator loads.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { checkArithmetic, evaluateArithmetic, measureAnswer } from '../../src/analysis/learn/answer-features.ts';
import { compileGate, gateArtifactProblems, operatingPoint, trainGate, type GateExample } from '../../src/analysis/learn/gate-model.ts';
import learned from '../../plugins/evaluators/learned/index.ts';
import { ctx, input, signal } from '../support/evaluators.ts';

const run = promisify(execFile);
const CLI = path.resolve(import.meta.dirname, '../../bin/tiergate.js');

describe('answer measures', () => {
  test('arithmetic is checked the way replies write it, rounding allowed, brackets and unknowns left alone', () => {
    assert.equal(evaluateArithmetic('3 x 60'), 180);
    assert.equal(evaluateArithmetic('2 + 3 * 4'), 14);
    assert.equal(evaluateArithmetic('10 / 0'), null);
    assert.deepEqual(checkArithmetic('He runs 3 x 60 = 180 meters, then 180 * 3 = 540.'), { checked: 2, wrong: 0, lastResult: 540 });
    assert.deepEqual(checkArithmetic('So <<3*60=170>>170 meters'), { checked: 1, wrong: 1, lastResult: 170 });
    assert.equal(checkArithmetic('10 / 3 = 3.33 each').wrong, 0, 'a rounded quotient is right');
    assert.equal(checkArithmetic('2x + 3 = 7 so x = 2').checked, 0, 'algebra with unknowns is not arithmetic to check');
  });

  test('the kind of answer comes from the prompt, and the measures read the reply against it', () => {
    const question = 'A box holds 6 eggs. How many eggs are in 7 boxes?';
    const right = measureAnswer(question, '6 * 7 = 42\n#### 42');
    assert.equal(right.kind, 'number');
    assert.equal(right.values.final_found, 1);
    assert.equal(right.values.final_is_last_result, 1);
    assert.equal(right.values.any_equation_wrong, 0);
    const wrong = measureAnswer(question, '6 * 7 = 48\n#### 48');
    assert.equal(wrong.values.any_equation_wrong, 1);
    const drifted = measureAnswer(question, '6 * 7 = 42, so the answer is 24');
    assert.equal(drifted.values.final_not_last_result, 1, 'a final number that does not follow from the working');
    const choice = measureAnswer('Which is a mammal?\nA) shark\nB) whale\nC) trout\nAnswer with the letter.', 'B');
    assert.equal(choice.kind, 'choice');
    assert.equal(choice.values.final_found, 1);
    assert.equal(choice.values.bare_answer, 1);
    assert.equal(measureAnswer('Say hello.', "I'm sorry, I can't help with that.").values.refusal, 1);
    assert.ok(measureAnswer('Is it safe?', 'Maybe. It might be, I think, but it is hard to say.').values.hedges > 0.9);
  });
});

/** Word problems whose answers are good exactly when their arithmetic checks out, in several shapes. */
function examples(n: number): GateExample[] {
  const out: GateExample[] = [];
  for (let i = 0; i < n; i++) {
    const a = 3 + (i % 17);
    const b = 2 + ((i * 7) % 13);
    const good = i % 3 !== 0;
    const result = good ? a * b : a * b + 1 + (i % 5);
    const words = i % 2 === 0 ? `Each box has ${a} apples and there are ${b} boxes.` : `There are ${b} boxes of ${a} apples each, so`;
    out.push({
      prompt: `A shop has ${b} boxes with ${a} apples in each. How many apples are there?`,
      reply: `${words} ${a} * ${b} = ${result}\n#### ${result}`,
      good: good ? 1 : 0,
      group: 'synthetic',
    });
  }
  return out;
}

describe('training the learned gate', () => {
  test('it learns a signal that is in the answers, calibrates it on held-out folds and writes a valid artifact', () => {
    const artifact = trainGate(examples(300), { answeredBy: ['m'], qualityTarget: 0.5, dataHash: 'test', folds: 5 });
    assert.deepEqual(gateArtifactProblems(artifact), []);
    assert.ok(artifact.metrics.auc !== null && artifact.metrics.auc > 0.95, `held-out AUC ${artifact.metrics.auc}`);
    assert.ok(artifact.metrics.ece < 0.1, `calibration error ${artifact.metrics.ece}`);
    const gate = compileGate(artifact);
    const question = 'A shop has 4 boxes with 9 apples in each. How many apples are there?';
    const right = gate.judge(question, '4 * 9 = 36\n#### 36').probability;
    const wrong = gate.judge(question, '4 * 9 = 38\n#### 38').probability;
    assert.ok(right > 0.8 && wrong < 0.2, `P(good): right ${right}, wrong ${wrong}`);
    const half = artifact.metrics.operating_points.find((p) => p.threshold === 0.5);
    assert.ok(half && half.recall !== null && half.recall > 0.9, 'at 0.5 it catches the bad answers');
  });

  test('operating points count precision, recall and false escalations as defined', () => {
    // p:    .2 .4 .6 .8   good: 0 1 0 1   threshold .5 fails the first two.
    assert.deepEqual(operatingPoint([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1], 0.5), {
      threshold: 0.5,
      escalated: 0.5,
      precision: 0.5,
      recall: 0.5,
      false_escalation: 0.5,
    });
  });

  test('an artifact of another version of the measures, or edited, is refused with the reason', () => {
    const artifact = trainGate(examples(60), { answeredBy: ['m'], qualityTarget: 0.5, dataHash: 'test', folds: 3 });
    const older = structuredClone(artifact);
    older.feature_spec.features = older.feature_spec.features.slice(1);
    assert.match(gateArtifactProblems(older)[0].message, /train it again/);
    assert.equal(gateArtifactProblems({ ...artifact, feature_spec_hash: 'x' })[0].field, 'feature_spec_hash');
    assert.equal(gateArtifactProblems({ ...artifact, format: 'tiergate-classifier' })[0].field, 'format');
    assert.equal(gateArtifactProblems({ ...artifact, weights: { indices: [1e9], values: [1] } })[0].field, 'weights');
  });

  test('the learned evaluator scores with the artifact and lets tool calls through unjudged', async () => {
    const artifact = trainGate(examples(300), { answeredBy: ['m'], qualityTarget: 0.5, dataHash: 'test' });
    const evaluator = await learned.create({ model: artifact as unknown as Record<string, unknown> }, ctx());
    const question = 'A shop has 5 boxes with 8 apples in each. How many apples are there?';
    const messages = [{ role: 'user' as const, content: question }];
    const good = await evaluator.evaluate(input({ answer: '5 * 8 = 40\n#### 40', messages }), signal);
    const bad = await evaluator.evaluate(input({ answer: '5 * 8 = 45\n#### 45', messages }), signal);
    assert.ok(good.score > 0.8 && bad.score < 0.2, `${good.score} / ${bad.score}`);
    assert.equal(bad.details?.answer_kind, 'number');
    const toolCall = { tool_calls: [{ id: 'c1', type: 'function' as const, function: { name: 'count', arguments: '{}' } }] };
    const tool = await evaluator.evaluate(input({ answer: null, messages, message: toolCall, finish: 'tool_calls' }), signal);
    assert.deepEqual(tool, { score: 1, details: { not_judged: 'a tool call, not a text answer' } });
  });
});

describe('tiergate train --gate', () => {
  test('writes the artifact from recorded outcomes of every tier, with held-out figures per model', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-gate-'));
    const rows = examples(120).map((e, i) => ({
      id: `r${i}`,
      split: i % 5 === 0 ? 'test' : 'train',
      source: 'apples',
      prompt: e.prompt,
      outcomes: { cheap: { score: e.good, response: e.reply }, strong: { score: 1, response: e.reply.replace(/= \d+\n#### \d+$/, '') } },
    }));
    writeFileSync(path.join(dir, 'rows.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = path.join(dir, 'gate.json');
    const { stdout } = await run(process.execPath, [
      CLI,
      'train',
      '--gate',
      '-d',
      path.join(dir, 'rows.jsonl'),
      '-t',
      'small=cheap',
      '-t',
      'large=strong',
      '-o',
      out,
    ]);
    assert.match(stdout, /trained the learned gate on 192 answers of cheap, strong/, 'the train split only: 96 rows × 2 models');
    assert.match(stdout, /apples · cheap/);
    const artifact = JSON.parse(readFileSync(out, 'utf8'));
    assert.deepEqual(gateArtifactProblems(artifact), []);
    assert.deepEqual(artifact.answered_by, ['cheap', 'strong']);
  });
});
