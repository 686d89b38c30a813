// src/analysis/metrics.ts and chart.ts: hand-made cases worked out by hand. The published
// figures that ../shared/data reproduces are in metrics.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
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

import { close } from '../support/metrics.ts';

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
