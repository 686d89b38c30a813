// src/analysis/metrics.ts and chart.ts: hand-made cases worked out by hand, then the
// published figures that ../shared/data reproduces (RouteLLM's GPT-4 vs Mixtral outcomes).
// The only hard-coded expectations on real data are published figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  aiq,
  apgr,
  baselines,
  cpt,
  equalCostStrongShare,
  fixedTierResults,
  gatePrecisionRecall,
  meetsTarget,
  nonDecreasingHull,
  oracleCurve,
  oracleTier,
  pgr,
  quantile,
  randomPolicyResults,
  randomRouterCurve,
  runningMaxPolyline,
  summarize,
  TARGETS,
  toCurvePoint,
  type CurvePoint,
  type PolicyRowResult,
  type RowOutcomes,
} from '../../src/analysis/metrics.ts';
import { costQualitySvg } from '../../src/analysis/chart.ts';

function close(actual: number, expected: number, tolerance = 1e-12, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what} expected ${expected}, got ${actual} (±${tolerance})`);
}

/** A curve given as [share, quality] pairs (cost unused). */
function shareCurve(pairs: Array<[number, number]>): CurvePoint[] {
  return pairs.map(([strong_share, quality]) => ({ strong_share, quality, cost: 0 }));
}

/** A curve given as [cost, quality] pairs (share unused). */
function costCurve(pairs: Array<[number, number]>): CurvePoint[] {
  return pairs.map(([cost, quality]) => ({ cost, quality, strong_share: 0 }));
}

// ---------------------------------------------------------------------------
// Hand-made cases
// ---------------------------------------------------------------------------

test('oracle tier: the cheapest tier meeting the target, else the top tier', () => {
  const row: RowOutcomes = {
    id: 'r',
    tiers: [
      { quality: 0.5, cost: 1 },
      { quality: 0.9, cost: 2 },
      { quality: 1, cost: 3 },
    ],
  };
  assert.equal(oracleTier(row, 0.4), 0);
  assert.equal(oracleTier(row, 0.8), 1);
  assert.equal(oracleTier(row, 0.9), 1, 'meeting the target exactly counts');
  assert.equal(oracleTier(row, 0.95), 2);
  assert.equal(
    oracleTier(
      {
        id: 'none',
        tiers: [
          { quality: 0.1, cost: 1 },
          { quality: 0.2, cost: 2 },
        ],
      },
      0.5,
    ),
    1,
    'none meets: top',
  );
  assert.equal(oracleTier({ id: 'one', tiers: [{ quality: 0, cost: 1 }] }, 0.5), 0);
  assert.equal(meetsTarget(0.1 + 0.7, 0.8), true, 'float noise (0.7999999999999999) still meets 0.8');
  assert.equal(meetsTarget(Number.NaN, 0), false);
  assert.throws(() => oracleTier({ id: 'empty', tiers: [] }, 0.5), /no tiers/);
});

// Four rows, two tiers costing 1 and 10; quality target 0.8 → oracle tiers a:0 b:1 c:0 d:1.
const rows4: RowOutcomes[] = [
  {
    id: 'a',
    tiers: [
      { quality: 0.9, cost: 1 },
      { quality: 1, cost: 10 },
    ],
  },
  {
    id: 'b',
    tiers: [
      { quality: 0.2, cost: 1 },
      { quality: 0.9, cost: 10 },
    ],
  },
  {
    id: 'c',
    tiers: [
      { quality: 0.9, cost: 1 },
      { quality: 0.95, cost: 10 },
    ],
  },
  {
    id: 'd',
    tiers: [
      { quality: 0.1, cost: 1 },
      { quality: 0.3, cost: 10, costEstimated: true },
    ],
  },
];
const results4: PolicyRowResult[] = [
  { id: 'a', firstTier: 0, servedTier: 0, quality: 0.9, cost: 1, escalated: false, firstPassedGate: true }, // right tier, gate right
  { id: 'b', firstTier: 0, servedTier: 1, quality: 0.9, cost: 11, escalated: true, firstPassedGate: false }, // wrong tier, gate caught it
  { id: 'c', firstTier: 1, servedTier: 1, quality: 0.95, cost: 10, escalated: false, firstPassedGate: null }, // over-routed, no gate
  { id: 'd', firstTier: 0, servedTier: 0, quality: 0.1, cost: 1, escalated: false, firstPassedGate: true }, // gate let a bad answer through
];

test('summarize: the four routing metrics by hand', () => {
  const m = summarize(rows4, results4, 0.8);
  assert.equal(m.rows, 4);
  close(m.routing_accuracy, 1 / 4); // only a's first tier is its oracle tier
  close(m.total_cost, 23);
  close(m.always_best_cost, 40);
  close(m.cost_savings, 1 - 23 / 40);
  close(m.mean_quality, (0.9 + 0.9 + 0.95 + 0.1) / 4);
  close(m.always_best_quality, (1 + 0.9 + 0.95 + 0.3) / 4);
  close(m.quality_retention, (0.9 + 0.9 + 0.95 + 0.1) / (1 + 0.9 + 0.95 + 0.3));
  close(m.escalation_rate, 1 / 4);
  close(m.strong_call_share, 2 / 4);
  close(m.mean_cost, 23 / 4);
  assert.deepEqual(m.first_tier_counts, [3, 1]);
  assert.deepEqual(m.served_tier_counts, [2, 2]);
  assert.equal(m.costs_estimated, true);
  // Targets are strict: an escalation rate of exactly 25 % does not meet "< 25 %".
  assert.deepEqual(m.meets, { routing_accuracy: false, cost_savings: false, quality_retention: false, escalation_rate: false });
  assert.equal(m.meets_all, false);
  assert.deepEqual(toCurvePoint(m, 'p'), { label: 'p', strong_share: 0.5, cost: 23, quality: m.mean_quality });
});

test('summarize: meets every target; errors name the row', () => {
  const rows = Array.from({ length: 10 }, (_, i): RowOutcomes => ({
    id: `r${i}`,
    tiers: [
      { quality: i === 9 ? 0 : 1, cost: 1 },
      { quality: 1, cost: 10 },
    ],
  }));
  const results = rows.map((row, i): PolicyRowResult => ({
    id: row.id,
    firstTier: 0,
    servedTier: i === 9 ? 1 : 0,
    quality: 1,
    cost: i === 9 ? 11 : 1,
    escalated: i === 9,
    firstPassedGate: i !== 9,
  }));
  const m = summarize(rows, results, 0.9);
  close(m.routing_accuracy, 0.9); // r9's oracle tier is 1: exactly 90 % is not > 90 %
  assert.equal(m.meets.routing_accuracy, false);
  close(m.cost_savings, 1 - 20 / 100);
  close(m.quality_retention, 1);
  close(m.escalation_rate, 0.1);
  assert.deepEqual({ ...m.meets, routing_accuracy: true }, { routing_accuracy: true, cost_savings: true, quality_retention: true, escalation_rate: true });
  const better = summarize(
    rows,
    results.map((r, i) => (i === 9 ? { ...r, firstTier: 1, escalated: false, cost: 10 } : r)),
    0.9,
  );
  assert.equal(better.meets_all, true);
  assert.equal(TARGETS.routing_accuracy, 0.9);

  assert.throws(() => summarize(rows, [{ ...results[0], id: 'nope' }], 0.9), /unknown row nope/);
  assert.throws(() => summarize(rows, [results[0], results[0]], 0.9), /r0 has more than one result/);
  assert.throws(() => summarize(rows, [{ ...results[0], servedTier: 2 }], 0.9), /servedTier 2/);
  const empty = summarize(rows, [], 0.9);
  assert.equal(empty.rows, 0);
  assert.ok(Number.isNaN(empty.routing_accuracy));
  assert.equal(empty.meets_all, false);
});

test('summarize: zero-cost baselines are 0/0 = "no change", x/0 = undefined', () => {
  const rows: RowOutcomes[] = [
    {
      id: 'z',
      tiers: [
        { quality: 1, cost: 0 },
        { quality: 1, cost: 0 },
      ],
    },
  ];
  assert.equal(summarize(rows, fixedTierResults(rows, 0), 0.5).cost_savings, 0);
  const paid = summarize(rows, [{ ...fixedTierResults(rows, 0)[0], cost: 1 }], 0.5);
  assert.ok(Number.isNaN(paid.cost_savings));
});

test('baselines by hand, the random router at equal cost in expectation', () => {
  const b = baselines(rows4, 0.8, 23);
  close(b.always_cheapest.total_cost, 4);
  close(b.always_cheapest.cost_savings, 0.9);
  close(b.always_cheapest.quality, (0.9 + 0.2 + 0.9 + 0.1) / 4);
  close(b.always_cheapest.routing_accuracy, 2 / 4);
  close(b.always_best.cost_savings, 0);
  close(b.always_best.quality_retention, 1);
  close(b.always_best.strong_share, 1);
  // Oracle: a→0, b→1, c→0, d→1, paying only that tier.
  close(b.oracle.routing_accuracy, 1);
  close(b.oracle.cost, 1 + 10 + 1 + 10);
  close(b.oracle.quality, (0.9 + 0.9 + 0.9 + 0.3) / 4);
  close(b.oracle.strong_share, 0.5);
  // Random: 4 + p·36 = 23 → p = 19/36.
  const p = 19 / 36;
  close(equalCostStrongShare(rows4, 23), p);
  close(b.random_equal_cost.cost, 23, 1e-9);
  close(b.random_equal_cost.strong_share, p);
  close(b.random_equal_cost.quality, (1 - p) * 0.525 + p * 0.7875);
  close(b.random_equal_cost.routing_accuracy, (2 * (1 - p) + 2 * p) / 4);
  close(b.random_equal_cost.first_tier_counts[1], 4 * p);
  assert.equal(b.random_equal_cost.label, 'random_equal_cost');
  // Clamped: a policy dearer than always-best, and one cheaper than always-cheapest.
  assert.equal(baselines(rows4, 0.8, 100).random_equal_cost.strong_share, 1);
  assert.equal(baselines(rows4, 0.8, 0).random_equal_cost.strong_share, 0);
  assert.deepEqual(baselines(rows4, 0.8, 23, 7), b, 'the seed changes nothing: the baseline is an exact expectation');
});

test('PGR, including a zero gap and a strong model worse than the weak one', () => {
  close(pgr(0.75, 0.5, 1), 0.5);
  close(pgr(0.5, 0.5, 1), 0);
  close(pgr(1, 0.5, 1), 1);
  close(pgr(1.1, 0.5, 1), 1.2, 1e-12, 'beating the strong model');
  close(pgr(0.4, 0.5, 1), -0.2);
  close(pgr(0.6, 0.8, 0.4), 0.5, 1e-12, 'inverted gap');
  assert.equal(pgr(0.7, 0.7, 0.7), 1, 'no gap, reached');
  assert.equal(pgr(0.8, 0.7, 0.7), 1);
  assert.equal(pgr(0.6, 0.7, 0.7), 0, 'no gap, fell short');
});

test('APGR: anchors, non-decreasing envelope, raw RouteLLM trapezoid', () => {
  close(apgr([], 0, 1), 0.5, 1e-12, 'anchors only = random line');
  close(apgr([], 0.6, 0.8), 0.5);
  close(apgr(shareCurve([[0.5, 1]]), 0, 1), 0.75); // 0.25 rising + 0.5 flat
  close(apgr(shareCurve([[0.5, 0.8]]), 0.6, 0.8), 0.75, 1e-12, 'scale-free');
  // A dip: (0.5, 1) then (0.75, 0.5). Envelope stays at 1 after 0.5; raw dips.
  close(
    apgr(
      shareCurve([
        [0.5, 1],
        [0.75, 0.5],
      ]),
      0,
      1,
    ),
    0.75,
  );
  close(
    apgr(
      shareCurve([
        [0.5, 1],
        [0.75, 0.5],
      ]),
      0,
      1,
      { monotone: false },
    ),
    0.25 + 0.1875 + 0.1875,
  );
  // The running max climbs back over its level mid-segment at x = 0.5:
  // 0.06 (rise) + 0.12 (flat 0.6) + 0.06 (flat) + 0.08 (0.6→1) + 0.4 (flat 1) = 0.72.
  const dip = [
    { x: 0, y: 0 },
    { x: 0.2, y: 0.6 },
    { x: 0.4, y: 0.2 },
    { x: 0.6, y: 1 },
    { x: 1, y: 1 },
  ];
  assert.deepEqual(
    runningMaxPolyline(dip).map((p) => [Math.round(p.x * 1e9) / 1e9, p.y]),
    [
      [0, 0],
      [0.2, 0.6],
      [0.4, 0.6],
      [0.5, 0.6],
      [0.6, 1],
      [1, 1],
    ],
  );
  close(
    apgr(
      shareCurve([
        [0.2, 0.6],
        [0.4, 0.2],
        [0.6, 1],
      ]),
      0,
      1,
    ),
    0.72,
  );
  close(apgr(shareCurve([[1, 1]]), 0, 1), 0.5, 1e-12, 'a point on the anchor adds nothing');
  close(
    apgr(
      shareCurve([
        [2, 1],
        [-1, 0],
      ]),
      0,
      1,
    ),
    0.5,
    1e-12,
    'shares are clamped to [0, 1]',
  );
  // Zero gap: the share of [0, 1] where the curve reaches the common score.
  close(apgr([], 0.7, 0.7), 1);
  close(apgr(shareCurve([[0.5, 0.6]]), 0.7, 0.7, { monotone: false }), 0, 1e-12, 'below the common score between the anchors');
  close(apgr(shareCurve([[0.5, 0.6]]), 0.7, 0.7), 1, 1e-12, 'the envelope never drops');
  close(apgr(shareCurve([[0.5, 0.8]]), 0.7, 0.7, { monotone: false }), 1);
});

test('CPT: first crossing, interpolated; null when never reached', () => {
  close(cpt(shareCurve([[0.5, 1]]), 0, 1, 0.5) ?? Number.NaN, 0.25);
  close(cpt(shareCurve([[0.5, 1]]), 0, 1, 0.8) ?? Number.NaN, 0.4);
  close(
    cpt(
      shareCurve([
        [0.2, 0.5],
        [0.6, 0.5],
        [0.8, 0.9],
      ]),
      0,
      1,
      0.5,
    ) ?? Number.NaN,
    0.2,
  );
  close(
    cpt(
      shareCurve([
        [0.2, 0.5],
        [0.6, 0.5],
        [0.8, 0.9],
      ]),
      0,
      1,
      0.7,
    ) ?? Number.NaN,
    0.7,
  );
  assert.equal(
    cpt(
      shareCurve([
        [0.5, 0.4],
        [1, 0.45],
      ]),
      0,
      1,
      0.5,
    ),
    null,
  );
  assert.equal(cpt([], 0, 1, 0.5), null, 'the (1, strong) anchor is not assumed');
  assert.equal(cpt([], 0, 1, 0), 0);
  assert.equal(cpt([], 0.7, 0.7, 0.5), 0, 'no gap: already recovered');
  assert.equal(cpt([], 0.7, 0.7, 1.5), null);
  close(cpt(shareCurve([[0.5, 0.4]]), 0.8, 0.4, 0.5) ?? Number.NaN, 0.25, 1e-12, 'inverted gap');
});

test('AIQ: area under the non-decreasing convex hull over the cost range', () => {
  const pts = costCurve([
    [1, 0.5],
    [2, 0.6],
    [3, 0.9],
    [4, 0.8],
  ]);
  // (2, 0.6) is under the chord (1, 0.5)–(3, 0.9); after the peak the hull runs flat.
  assert.deepEqual(nonDecreasingHull(pts), [
    { x: 1, y: 0.5 },
    { x: 3, y: 0.9 },
    { x: 4, y: 0.9 },
  ]);
  close(aiq(pts), (((0.5 + 0.9) / 2) * 2 + 0.9) / 3);
  close(aiq(pts, { costRange: [0, 4] }), 2.3 / 4, 1e-12, 'below the smallest cost scores 0');
  close(aiq(pts, { costRange: [1, 6] }), (2.3 + 0.9 * 2) / 5, 1e-12, 'beyond the largest cost the best carries on');
  close(aiq(costCurve([[2, 0.7]])), 0.7);
  close(
    aiq(
      costCurve([
        [2, 0.7],
        [2, 0.9],
      ]),
    ),
    0.9,
    1e-12,
    'same cost: the best quality',
  );
  close(
    aiq(
      costCurve([
        [1, 0.5],
        [2, 0.75],
        [3, 1],
      ]),
    ),
    0.75,
    1e-12,
    'collinear points',
  );
  close(
    aiq(
      costCurve([
        [1, 0.9],
        [3, 0.5],
      ]),
    ),
    0.9,
    1e-12,
    'dearer and worse adds nothing',
  );
  assert.ok(Number.isNaN(aiq([])));
});

test('gate precision and recall by hand', () => {
  const g = gatePrecisionRecall(results4, rows4, 0.8);
  // a: passed, tier 0 good → tp; b: failed, tier 0 bad → tn; c: no gate; d: passed, bad → fp.
  assert.deepEqual({ ...g }, { precision: 0.5, recall: 1, tp: 1, fp: 1, fn: 0, tn: 1, gated: 3 });
  const none = gatePrecisionRecall([results4[2]], rows4, 0.8);
  assert.equal(none.gated, 0);
  assert.ok(Number.isNaN(none.precision) && Number.isNaN(none.recall));
  const fn = gatePrecisionRecall([{ ...results4[0], firstPassedGate: false }], rows4, 0.8);
  assert.deepEqual([fn.fn, fn.recall], [1, 0]);
});

test('random and oracle curves by hand; seeded random policy', () => {
  const curve = randomRouterCurve(rows4, 2);
  assert.equal(curve.length, 3);
  close(curve[0].quality, 0.525);
  close(curve[2].quality, 0.7875);
  close(curve[1].quality, (0.525 + 0.7875) / 2);
  close(curve[1].cost, (4 + 40) / 2);
  close(apgr(curve, 0.525, 0.7875), 0.5);
  // Gains: b +0.7, d +0.2, a +0.1, c +0.05 → budget 2 rows = b and d.
  const oracle = oracleCurve(rows4, 2);
  close(oracle[1].strong_share, 0.5);
  close(oracle[1].quality, (2.1 + 0.7 + 0.2) / 4);
  close(oracle[1].cost, 4 + 18);
  close(oracle[2].quality, 3.15 / 4);
  const ties = oracleCurve(
    [
      {
        id: 't',
        tiers: [
          { quality: 1, cost: 1 },
          { quality: 1, cost: 2 },
        ],
      },
    ],
    1,
  );
  assert.equal(ties[1].strong_share, 0, 'no gain, no strong call');
  assert.deepEqual(randomPolicyResults(rows4, 0.5, 42), randomPolicyResults(rows4, 0.5, 42));
  assert.ok(randomPolicyResults(rows4, 0, 1).every((r) => r.servedTier === 0));
  assert.ok(randomPolicyResults(rows4, 1, 1).every((r) => r.servedTier === 1));
  assert.equal(quantile([3, 1, 2, 4], 0.5), 2.5);
});

test('chart: an SVG naming every series, nothing written', async () => {
  const b = baselines(rows4, 0.8, 23);
  const svg = await costQualitySvg(
    [
      { name: 'tiergate policy', points: [toCurvePoint(summarize(rows4, results4, 0.8))] },
      { name: 'random router', points: randomRouterCurve(rows4) },
      { name: 'always-best', points: [b.always_best] },
    ],
    { title: 'Cost & quality' },
  );
  assert.match(svg, /^<svg/);
  for (const name of ['tiergate policy', 'random router', 'always-best', 'Cost &amp; quality']) assert.ok(svg.includes(name), name);
  const byShare = await costQualitySvg([{ name: 'oracle curve', points: oracleCurve(rows4) }], { x: 'strong_share' });
  assert.ok(byShare.startsWith('<svg') && byShare.includes('oracle curve') && byShare.includes('100%'));
});

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
