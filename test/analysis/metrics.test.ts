// src/analysis/metrics.ts on the published figures that ../shared/data reproduces
// (RouteLLM's GPT-4 vs Mixtral outcomes). The only hard-coded expectations on real data
// are published figures. Hand-made cases, and the chart, are in metrics-by-hand.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  aiq,
  apgr,
  baselines,
  cpt,
  oracleCurve,
  pgr,
  randomPolicyResults,
  randomRouterCurve,
  summarize,
  toCurvePoint,
  type PolicyRowResult,
  type RowOutcomes,
} from '../../src/analysis/metrics.ts';
import { close } from '../support/metrics.ts';

// ---------------------------------------------------------------------------
// Published figures (../shared/data, RouteLLM: GPT-4-1106-preview vs Mixtral-8x7B)
// ---------------------------------------------------------------------------

const DATA = path.resolve(import.meta.dirname, '../../../shared/data/routellm_gpt4_vs_mixtral.jsonl');
const WEAK = 'mistralai/Mixtral-8x7B-Instruct-v0.1';
const STRONG = 'gpt-4-1106-preview';
// Typical per-call costs from the data README (no costs are recorded in this file).
const WEAK_COST = 0.00025;
const STRONG_COST = 0.005;

interface Outcome {
  score: number | null;
  raw_turn_scores_1_to_10?: Array<number | null>;
}
interface DataRow {
  id: string;
  source: string;
  split: string;
  outcomes: Record<string, Outcome>;
  meta: { routellm_contaminated?: boolean };
}

let cache: DataRow[] | undefined;
function data(): DataRow[] {
  cache ??= readFileSync(DATA, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as DataRow);
  return cache;
}
const skipReason = existsSync(DATA) ? undefined : `${DATA} is absent: published-figure checks skipped`;

function twoTier(row: DataRow): RowOutcomes {
  return {
    id: row.id,
    tiers: [
      { quality: row.outcomes[WEAK].score ?? Number.NaN, cost: WEAK_COST, costEstimated: true },
      { quality: row.outcomes[STRONG].score ?? Number.NaN, cost: STRONG_COST, costEstimated: true },
    ],
  };
}

/**
 * MT-Bench turn by turn, as RouteLLM scores it: the benchmark score is the mean of all
 * per-turn judge ratings, so a question whose one turn has no rating counts once, not
 * twice. One RowOutcomes per turn the `model` has a rating for; quality = rating / 10.
 */
function mtBenchTurns(model: string): Array<{ row: RowOutcomes; quality: number }> {
  const out: Array<{ row: RowOutcomes; quality: number }> = [];
  for (const r of data()) {
    if (r.source !== 'mt-bench') continue;
    const turns = (m: string) => r.outcomes[m].raw_turn_scores_1_to_10 ?? [];
    turns(model).forEach((rating, t) => {
      const weak = turns(WEAK)[t];
      const strong = turns(STRONG)[t];
      if (rating === null || rating < 0 || weak == null || strong == null) return;
      out.push({
        row: {
          id: `${r.id}#${t + 1}`,
          tiers: [
            { quality: weak / 10, cost: WEAK_COST },
            { quality: strong / 10, cost: STRONG_COST },
          ],
        },
        quality: rating / 10,
      });
    });
  }
  return out;
}

/** A commercial router's recorded answers scored as a fixed policy. */
function commercialRouter(model: string) {
  const turns = mtBenchTurns(model);
  const rows = turns.map((t) => t.row);
  // Which model the commercial router called on each turn is not recorded: the tier fields
  // and the cost are placeholders, and only quality-derived numbers are asserted.
  const results = turns.map(({ row, quality }): PolicyRowResult => ({
    id: row.id,
    firstTier: 0,
    servedTier: 0,
    quality,
    cost: 0,
    escalated: false,
    firstPassedGate: null,
  }));
  return { rows, metrics: summarize(rows, results, 0.9) };
}

test('published: router:unify scores 8.757862 on MT-Bench; its GPT-4 share is a published number only', { skip: skipReason }, () => {
  const { rows, metrics } = commercialRouter('router:unify');
  // RouteLLM benchmarks/README.md: MT-Bench 8.757862 with 45.625 % GPT-4 calls. The score is
  // the mean over the 159 rated turns (one turn is rated -1 and left out); averaging the
  // per-question `score` × 10 instead counts that one-turn question as two and misses.
  assert.equal(rows.length, 159);
  close(metrics.mean_quality * 10, 8.757862, 5e-7, 'router:unify');
  // 45.625 % = 73 of 160 turn-level calls — but the data does not record which model Unify
  // called on each turn, so the share cannot be recomputed here. What can be derived: at
  // that published share Unify recovers about as much of the Mixtral→GPT-4 gap as a random
  // router does (PGR = share), consistent with RouteLLM's claim that its router matches
  // Unify's score with 25.4 % GPT-4 calls.
  const b = baselines(rows, 0.9, 0);
  const unifyPgr = pgr(metrics.mean_quality, b.always_cheapest.quality, b.always_best.quality);
  const randomAtShare = pgr((1 - 0.45625) * b.always_cheapest.quality + 0.45625 * b.always_best.quality, b.always_cheapest.quality, b.always_best.quality);
  close(randomAtShare, 0.45625, 1e-12);
  assert.ok(Math.abs(unifyPgr - randomAtShare) < 0.05, `Unify PGR ${unifyPgr} vs random ${randomAtShare}`);
  close(metrics.quality_retention, metrics.mean_quality / b.always_best.quality);
});

test('published: router:martian scores 8.3125 on MT-Bench', { skip: skipReason }, () => {
  const { rows, metrics } = commercialRouter('router:martian');
  assert.equal(rows.length, 160);
  close(metrics.mean_quality * 10, 8.3125, 5e-7, 'router:martian');
});

test('published: decontaminated GPT-4 vs Mixtral means (MMLU, GSM8K, MT-Bench)', { skip: skipReason }, () => {
  const clean = data().filter((r) => !r.meta.routellm_contaminated);
  const bySource = (source: string) => clean.filter((r) => r.source === source).map(twoTier);
  const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
  const means = (source: string) => {
    const b = baselines(bySource(source), 1, 0);
    return { strong: b.always_best.quality, weak: b.always_cheapest.quality, n: b.always_best.rows };
  };
  const mmlu = means('mmlu');
  const gsm8k = means('gsm8k');
  const mt = means('mt-bench');
  // Counts after decontamination, from RouteLLM's own benchmark code.
  assert.deepEqual([mmlu.n, gsm8k.n, mt.n], [14037, 1307, 72]);
  assert.deepEqual([round(mmlu.strong * 100, 1), round(mmlu.weak * 100, 1)], [80.6, 68.1]);
  assert.deepEqual([round(gsm8k.strong * 100, 1), round(gsm8k.weak * 100, 1)], [85.8, 63.7]);
  assert.deepEqual([round(mt.strong * 10, 2), round(mt.weak * 10, 2)], [9.21, 8.28]);
});

test('published: a random router recovers half the gap (APGR 0.5); the oracle recovers more than all of it', { skip: skipReason }, () => {
  const rows = data()
    .filter((r) => (r.source === 'mmlu' || r.source === 'gsm8k') && r.split === 'test' && !r.meta.routellm_contaminated)
    .map(twoTier);
  const b = baselines(rows, 1, 0);
  const weak = b.always_cheapest.quality;
  const strong = b.always_best.quality;
  assert.equal(pgr(b.always_best.quality, weak, strong), 1);
  assert.equal(pgr(b.always_cheapest.quality, weak, strong), 0);

  // The expected curve is the anchor line, so this one is 0.5 by construction …
  const expected = apgr(randomRouterCurve(rows), weak, strong);
  assert.ok(Math.abs(expected - 0.5) < 0.02, `expected-curve APGR ${expected}`);
  // … while a seeded random policy, actually routed row by row and scored by summarize(),
  // has to land there through the whole pipeline.
  const sampled = Array.from({ length: 11 }, (_, i) => toCurvePoint(summarize(rows, randomPolicyResults(rows, i / 10, 1000 + i), 1)));
  const sampledApgr = apgr(sampled, weak, strong);
  assert.ok(Math.abs(sampledApgr - 0.5) < 0.02, `sampled random APGR ${sampledApgr}`);
  const sampledCpt50 = cpt(sampled, weak, strong, 0.5);
  assert.ok(sampledCpt50 !== null && Math.abs(sampledCpt50 - 0.5) < 0.05, `sampled random CPT(50%) ${sampledCpt50}`);

  // The oracle takes the better answer per row, so it passes the strong model's quality
  // with a fraction g of strong calls (the rows where only GPT-4 is right) and APGR > 1.
  // Its value follows from g and the oracle's quality alone: a rise from (0, weak) to
  // (g, best), then flat.
  const oracle = oracleCurve(rows, 100);
  const oracleApgr = apgr(oracle, weak, strong);
  const g = rows.filter((r) => r.tiers[1].quality > r.tiers[0].quality).length / rows.length;
  const best = rows.reduce((s, r) => s + Math.max(r.tiers[0].quality, r.tiers[1].quality), 0) / rows.length;
  close(oracleApgr, pgr((g * (weak + best)) / 2 + (1 - g) * best, weak, strong), 1e-9, 'oracle APGR');
  assert.ok(oracleApgr > 1 && oracleApgr > sampledApgr);
  close(cpt(oracle, weak, strong, 1) ?? Number.NaN, (g * (strong - weak)) / (best - weak), 1e-9, 'oracle CPT(100%)');
  // The per-row oracle at target 1 (cheapest correct tier) reaches the same quality with
  // routing accuracy 1, but DESIGN §5 sends rows neither model gets right to the top tier,
  // so it calls GPT-4 on every row Mixtral gets wrong, not only on the g that need it.
  close(b.oracle.routing_accuracy, 1);
  close(b.oracle.quality, best, 1e-12);
  close(b.oracle.strong_share, rows.filter((r) => r.tiers[0].quality < 1).length / rows.length, 1e-12);
  assert.ok(b.oracle.strong_share > g);
  // Cost–quality view of the same curves: the oracle's hull dominates the random line.
  assert.ok(aiq(oracle) > aiq(randomRouterCurve(rows)));
});
