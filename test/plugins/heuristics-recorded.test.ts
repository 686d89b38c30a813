// The heuristics gate of the shipped gateway.yaml on the recorded real answers of
// ../shared/data (issue 16): how often it would escalate an answer the benchmark records as
// correct (false escalations; the bar is 2 % on each dataset) and how many of the answers
// recorded as wrong it catches (its recall; low by nature, since heuristics look at the
// answer's shape, not its truth). Test splits only; nothing here was tuned on them.
// docs/eval/heuristics.md has the figures and the command that reproduces them.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { buildRuntime } from '../../src/policy/compile.ts';
import type { Runtime } from '../../src/policy/runtime.ts';
import { createLogger } from '../../src/observe/logger.ts';
import type { ChatMessage, Evaluator } from '../../src/plugin-contract/plugin-api.ts';
import { input, signal } from '../support/evaluators.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const DATA = path.resolve(REPO, '../shared/data');
const DATASETS = ['routellm_gpt4_vs_mixtral.jsonl', 'routerbench_subset_11models.jsonl'];
const SOURCES = ['mmlu', 'gsm8k', 'mt-bench', 'arc-challenge', 'winogrande', 'mbpp'];
/** Issue 16's bar: at most this share of correct answers escalated, on each dataset. */
const MAX_FALSE_ESCALATION = 0.02;

interface Row {
  id: string;
  source: string;
  split: string;
  prompt: string | ChatMessage[];
  outcomes: Record<string, { score: number | null; response?: string }>;
}

interface Tally {
  correct: number;
  correctFailed: number;
  wrong: number;
  wrongCaught: number;
  /** Rows of the split whose answers have no recorded text (MMLU, MT-Bench): not judged. */
  withoutText: number;
  examples: string[];
}

const newTally = (): Tally => ({ correct: 0, correctFailed: 0, wrong: 0, wrongCaught: 0, withoutText: 0, examples: [] });
const pct = (n: number, of: number) => (of === 0 ? 'n/a' : `${((100 * n) / of).toFixed(2)} %`);

function messagesOf(prompt: Row['prompt'], edit: (text: string) => string): ChatMessage[] {
  return typeof prompt === 'string' ? [{ role: 'user', content: edit(prompt) }] : prompt.map((m) => ({ ...m, content: edit(String(m.content)) }));
}

// The RouterBench prompts end every question with "Print only a single choice from "A" or
// "B" … without explanation" (winogrande also with "Please answer with the letter of the
// correct answer"). That sentence alone made the old heuristics accept a one-letter answer.
// With it removed the same answers test the answer's own form, as on a prompt that
// does not say how to answer ("…\nAnswer:", as MMLU's do).
const withoutAnswerInstruction = (text: string) =>
  text.replace(/Print only a single choice[^\n]*?without explanation\./g, '').replace(/Please answer with the letter of the correct answer\./g, '');

/** Scores every recorded answer (score 0 or 1, with text) of the test split. */
async function measure(file: string, evaluator: Evaluator, threshold: number, edit: (text: string) => string = (t) => t): Promise<Map<string, Tally>> {
  const bySource = new Map<string, Tally>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const row = JSON.parse(line) as Row;
    if (row.split !== 'test') continue;
    const tally = bySource.get(row.source) ?? newTally();
    bySource.set(row.source, tally);
    const messages = messagesOf(row.prompt, edit);
    let judged = false;
    for (const [model, outcome] of Object.entries(row.outcomes)) {
      // Scores in between (MT-Bench's judge ratings) are neither correct nor wrong.
      if (typeof outcome.response !== 'string' || (outcome.score !== 0 && outcome.score !== 1)) continue;
      judged = true;
      const r = await evaluator.evaluate(input({ answer: outcome.response, messages }), signal);
      const failed = r.score < threshold;
      if (outcome.score === 1) {
        tally.correct++;
        if (failed) {
          tally.correctFailed++;
          if (tally.examples.length < 5)
            tally.examples.push(`${row.id} ${model} ${JSON.stringify(outcome.response.slice(0, 60))}: ${JSON.stringify(r.details?.failed)}`);
        }
      } else {
        tally.wrong++;
        if (failed) tally.wrongCaught++;
      }
    }
    if (!judged) tally.withoutText++;
  }
  return bySource;
}

function total(bySource: Map<string, Tally>): Tally {
  const all = newTally();
  for (const t of bySource.values()) {
    all.correct += t.correct;
    all.correctFailed += t.correctFailed;
    all.wrong += t.wrong;
    all.wrongCaught += t.wrongCaught;
    all.withoutText += t.withoutText;
  }
  return all;
}

function report(t: TestContext, label: string, bySource: Map<string, Tally>): void {
  const all = total(bySource);
  t.diagnostic(
    `${label}: false escalations ${all.correctFailed}/${all.correct} = ${pct(all.correctFailed, all.correct)}; ` +
      `wrong answers caught ${all.wrongCaught}/${all.wrong} = ${pct(all.wrongCaught, all.wrong)}`,
  );
  for (const source of SOURCES) {
    const s = bySource.get(source);
    if (!s) continue;
    if (s.correct + s.wrong === 0) {
      t.diagnostic(`  ${source}: no recorded answer text (${s.withoutText} rows): not measurable`);
      continue;
    }
    t.diagnostic(
      `  ${source}: false escalations ${s.correctFailed}/${s.correct} = ${pct(s.correctFailed, s.correct)}; ` +
        `wrong answers caught ${s.wrongCaught}/${s.wrong} = ${pct(s.wrongCaught, s.wrong)}` +
        (s.examples.length > 0 ? `; e.g. ${s.examples.join(' | ')}` : ''),
    );
  }
}

describe('heuristics, as the shipped gateway.yaml configures and gates it, on recorded real answers (test splits)', () => {
  let runtime: Runtime | null = null;
  let evaluator: Evaluator;
  let threshold: number;

  before(async () => {
    // The shipped policy decides both the evaluator's options and the bar it must clear.
    runtime = await buildRuntime(path.join(REPO, 'gateway.yaml'), { logger: createLogger({ level: 'silent' }), mode: 'validate', env: {} });
    const gated = [...runtime.routes.values()].flatMap((route) =>
      (route.gate?.evaluators ?? []).filter((e) => e.name === 'heuristics').map((entry) => ({ route, gate: route.gate!, entry })),
    );
    assert.ok(gated.length > 0, 'the shipped gateway.yaml gates a route with heuristics');
    // The bar heuristics alone must clear: its own threshold, and the gate's (the shipped
    // gate combines by min, so a heuristics score below the gate's threshold fails it).
    threshold = Math.max(...gated.map(({ gate, entry }) => Math.max(entry.threshold ?? 0, gate.combine === 'min' ? gate.threshold : 0)));
    evaluator = gated[0].entry.evaluator;
  });
  after(async () => {
    await runtime?.dispose();
  });

  for (const name of DATASETS) {
    test(`${name}: at most ${MAX_FALSE_ESCALATION * 100} % of the correct answers escalated; the share of wrong answers caught`, async (t) => {
      const file = path.join(DATA, name);
      if (!existsSync(file)) {
        t.skip(`recorded data not found at ${file}; this measurement needs ../shared/data (see its README)`);
        return;
      }
      t.diagnostic(`gate threshold from the shipped gateway.yaml: ${threshold}`);
      const asRecorded = await measure(file, evaluator, threshold);
      report(t, `${name}, prompts as recorded`, asRecorded);
      const all = total(asRecorded);
      assert.ok(all.correct > 900, `${all.correct} correct answers with text`);
      assert.ok(all.wrong > 300, `${all.wrong} wrong answers with text`);
      assert.ok(all.correctFailed / all.correct <= MAX_FALSE_ESCALATION, `false escalations ${pct(all.correctFailed, all.correct)}`);
      for (const [source, s] of asRecorded) {
        if (s.correct > 0) assert.ok(s.correctFailed / s.correct <= MAX_FALSE_ESCALATION, `${source}: false escalations ${pct(s.correctFailed, s.correct)}`);
      }

      // The same answers without the sentence that tells the model to answer with one
      // letter: the answer's form must carry it (the old heuristics escalated 89 % here).
      const unprompted = await measure(file, evaluator, threshold, withoutAnswerInstruction);
      report(t, `${name}, without the "answer with one letter" instruction`, unprompted);
      const bare = total(unprompted);
      assert.equal(bare.correct, all.correct);
      assert.ok(
        bare.correctFailed / bare.correct <= MAX_FALSE_ESCALATION,
        `false escalations without the instruction ${pct(bare.correctFailed, bare.correct)}`,
      );
    });
  }
});
