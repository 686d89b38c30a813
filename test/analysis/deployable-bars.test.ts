// The deployable configurations of issue 16, evaluated as the issue says: `tiergate eval`
// on the test splits of ../shared/data, with the default real gate (nothing on the policy's
// path reads a recorded score). Their models and costs were chosen on the train splits
// only (docs/eval/README.md). The bars are the issue's:
// - RouterBench: ≥ 97 % quality retention at ≥ 45 % cost saved against always-GPT-4,
//   beating the classifier alone and the agreement gate alone at equal cost;
// - RouteLLM GSM8K: ≥ 92 % at ≥ 55 %, where the classifier alone keeps 89.3 % at 55.8 %.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { runEval, type EvalReport } from '../../src/analysis/eval/runner.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DATA = path.resolve(ROOT, '../shared/data');
const ROUTERBENCH = path.join(DATA, 'routerbench_subset_11models.jsonl');
const ROUTELLM = path.join(DATA, 'routellm_gpt4_vs_mixtral.jsonl');

function needsData(t: TestContext, file: string): boolean {
  if (existsSync(file)) return true;
  if (process.env.CI) assert.fail(`${file} is missing: CI runs beside ../shared/data`);
  t.skip(`${file} is not here`);
  return false;
}

async function evaluate(config: string, data: string, route: string, extra: { where?: string; sweep?: number } = {}): Promise<EvalReport> {
  const { report } = await runEval({ config: path.join(ROOT, config), data, route, split: 'test', sweep: extra.sweep ?? 0, ...extra });
  assert.equal(report.gate.recorded_rows, 0, `${config}: no row may be gated on a recorded score`);
  return report;
}

/** The best retention a configuration's curve reaches while saving at least `savings`: what it keeps at our cost or cheaper. */
function bestRetentionAtLeast(report: EvalReport, savings: number): number {
  const points = [report.metrics, ...report.sweep].filter((p) => p.cost_savings >= savings);
  return Math.max(-Infinity, ...points.map((p) => p.quality_retention));
}

describe('deployable gates on the test splits (issue 16 bars)', () => {
  test('RouterBench: examples/routerbench keeps ≥ 97 % at ≥ 45 % saved, above the classifier alone and the agreement gate alone at its cost', async (t) => {
    if (!needsData(t, ROUTERBENCH)) return;
    const ours = await evaluate('examples/routerbench/gateway.yaml', ROUTERBENCH, 'bench');
    assert.ok(ours.dataset.evaluated >= 940, `every complete row is evaluated (${ours.dataset.evaluated})`);
    assert.ok(ours.metrics.quality_retention >= 0.97, `retention ${ours.metrics.quality_retention}`);
    assert.ok(ours.metrics.cost_savings >= 0.45, `savings ${ours.metrics.cost_savings}`);
    const classifier = await evaluate('examples/learned/routerbench.yaml', ROUTERBENCH, 'bench', { sweep: 41 });
    const agreement = await evaluate('docs/eval/agreement-routerbench.yaml', ROUTERBENCH, 'bench', { sweep: 11 });
    for (const [name, other] of [
      ['classifier alone', classifier],
      ['agreement alone', agreement],
    ] as const) {
      const theirs = bestRetentionAtLeast(other, ours.metrics.cost_savings);
      assert.ok(theirs < ours.metrics.quality_retention, `${name} keeps ${theirs} at ${ours.metrics.cost_savings} saved or more`);
    }
  });

  test('RouteLLM GSM8K: examples/routellm keeps ≥ 92 % at ≥ 55 % saved, with the learned gate and the cascade rule', async (t) => {
    if (!needsData(t, ROUTELLM)) return;
    const ours = await evaluate('examples/routellm/gateway.yaml', ROUTELLM, 'qa', { where: "source = 'gsm8k'" });
    assert.deepEqual(ours.policy.gate_evaluators, ['learned']);
    assert.ok(ours.dataset.evaluated >= 650, `every GSM8K test row is evaluated (${ours.dataset.evaluated})`);
    assert.ok(ours.metrics.quality_retention >= 0.92, `retention ${ours.metrics.quality_retention}`);
    assert.ok(ours.metrics.cost_savings >= 0.55, `savings ${ours.metrics.cost_savings}`);
    // The classifier alone, on the same rows, at the same or lower savings, keeps less.
    const classifier = await evaluate('examples/learned/gateway.yaml', ROUTELLM, 'math', { where: "source = 'gsm8k'", sweep: 41 });
    assert.ok(bestRetentionAtLeast(classifier, ours.metrics.cost_savings) < ours.metrics.quality_retention);
  });
});
