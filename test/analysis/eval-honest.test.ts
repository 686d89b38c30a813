// An evaluation that cannot flatter (issue 16, point 1; DESIGN §5): the default gate reads
// no recorded score, random at equal cost is the best mix of fixed tiers (their hull), the
// perfect judge and the oracle are labelled upper bounds, gap closed / APGR / CPT are
// refused where a lower tier beats the top one, and a sweep that does not move says so.
// Small crafted rows whose numbers follow by hand; then the shared data (skipped when
// absent).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TiergateError } from '../../src/common/errors.ts';
import { PERFECT_JUDGE, runEval, type EvalSettings, type RowRun } from '../../src/analysis/eval/runner.ts';
import { chartSvg, terminalReport } from '../../src/analysis/eval/format.ts';
import { baselines, equalCostMix, equalCostStrongShare, pgrRefusal, tierHull, type RowOutcomes } from '../../src/analysis/metrics.ts';
import { loadDataset, scoreOf, type DatasetRow, type RecordedOutcome } from '../../src/analysis/eval/dataset.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const ROUTELLM = path.resolve(repoRoot, '../shared/data/routellm_gpt4_vs_mixtral.jsonl');
const ROUTERBENCH = path.resolve(repoRoot, '../shared/data/routerbench_subset_11models.jsonl');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function close(actual: number, expected: number, what: string, tolerance = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} ≠ ${expected}`);
}

function outcome(score: number | null, response: string | undefined, cost: number): RecordedOutcome {
  return { score, cost_usd: cost, input_tokens: null, output_tokens: null, ...(response !== undefined ? { response } : {}) };
}

function workspace(rows: DatasetRow[], policy: string): { dir: string; config: string; data: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-eval-honest-'));
  dirs.push(dir);
  const config = path.join(dir, 'gateway.yaml');
  const data = path.join(dir, 'outcomes.jsonl');
  writeFileSync(config, policy);
  writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { dir, config, data };
}

// ---------------------------------------------------------------------------
// Random at equal cost = the hull of the fixed tiers
// ---------------------------------------------------------------------------

describe('random at equal cost is the best mix of fixed tiers (their hull)', () => {
  // Per row: cheap (cost 1, quality 0.2), middle (2, 0.8), top (10, 0.9). Two rows, so
  // the tiers' totals are (2, 0.2), (4, 0.8), (20, 0.9): the middle tier is on the hull.
  const row = (id: string): RowOutcomes => ({
    id,
    tiers: [
      { quality: 0.2, cost: 1 },
      { quality: 0.8, cost: 2 },
      { quality: 0.9, cost: 10 },
    ],
  });
  const rows = [row('a'), row('b')];

  test('a middle tier on the hull is mixed with its neighbours, not skipped', () => {
    assert.deepEqual(
      tierHull(rows).map((p) => p.tier),
      [0, 1, 2],
    );
    // At a total cost of 6: between the middle (4) and the top (20), w = 2/16 on the top.
    assert.deepEqual(equalCostMix(rows, 6), [
      { tier: 1, weight: 7 / 8 },
      { tier: 2, weight: 1 / 8 },
    ]);
    const b = baselines(rows, 0.5, 6);
    close(b.random_equal_cost.cost, 6, 'spends what the policy spends');
    close(b.random_equal_cost.quality, (7 / 8) * 0.8 + (1 / 8) * 0.9, 'quality of the hull at cost 6');
    close(b.random_equal_cost.strong_share, 1 / 8, 'strong share');
    // The old baseline mixed only cheap and top: p = (6 − 2) / (20 − 2) = 2/9, quality 0.356.
    const p = equalCostStrongShare(rows, 6);
    close(p, 2 / 9, 'the two-tier share');
    const old = (1 - p) * 0.2 + p * 0.9;
    assert.ok(b.random_equal_cost.quality > old + 0.4, `hull ${b.random_equal_cost.quality} vs cheapest/top ${old}`);
    // Between cheap (2) and middle (4): cost 3 → half and half.
    close(baselines(rows, 0.5, 3).random_equal_cost.quality, 0.5, 'between cheap and middle');
    // Beyond the best point, spending more buys nothing; below the cheapest, it is the cheapest.
    close(baselines(rows, 0.5, 100).random_equal_cost.quality, 0.9, 'at or beyond the top');
    close(baselines(rows, 0.5, 0).random_equal_cost.quality, 0.2, 'below the cheapest');
  });

  test('a middle tier under the chord, or dearer and no better, is not on the hull', () => {
    const under: RowOutcomes[] = [
      {
        id: 'u',
        tiers: [
          { quality: 0.2, cost: 1 },
          { quality: 0.5, cost: 5 },
          { quality: 0.9, cost: 10 },
        ],
      },
    ];
    // The chord from (1, 0.2) to (10, 0.9) is at 0.511 at cost 5: the middle lies under it.
    assert.deepEqual(
      tierHull(under).map((p) => p.tier),
      [0, 2],
    );
    const dearWorse: RowOutcomes[] = [
      {
        id: 'd',
        tiers: [
          { quality: 0.2, cost: 1 },
          { quality: 0.95, cost: 4 },
          { quality: 0.9, cost: 10 },
        ],
      },
    ];
    assert.deepEqual(
      tierHull(dearWorse).map((p) => p.tier),
      [0, 1],
      'the top tier is dearer and worse than the middle',
    );
    close(baselines(dearWorse, 0.5, 10).random_equal_cost.quality, 0.95, "at the top tier's cost the best mix is the middle tier");
  });
});

// ---------------------------------------------------------------------------
// Gap closed, APGR and CPT refused where the ladder is not monotone
// ---------------------------------------------------------------------------

const THREE_TIERS = `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, profiles: { unused: { capability: 0.5, first_token_ms: 0, tokens_per_second: 1000 } } }
models:
  cheap: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  mid: { provider: sim, price: { input_per_mtok: 2, output_per_mtok: 2 } }
  top: { provider: sim, price: { input_per_mtok: 10, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [cheap] }
  - { name: medium, models: [mid] }
  - { name: large, models: [top] }
features:
  source: metadata.source
routes:
  qa:
    router: { plugin: rules, rules: [{ when: "source = 'b'", tier: medium }] }
    default: small
`;

describe('gap closed, APGR and CPT only where the top tier is the best', () => {
  const rows = (midBeatsTop: boolean): DatasetRow[] =>
    ['a', 'b', 'c', 'd'].map((id, i) => ({
      id,
      source: i % 2 === 0 ? 'a' : 'b',
      split: 'test',
      prompt: `question ${id}`,
      outcomes: {
        C: outcome(i === 0 ? 1 : 0, `answer ${id} from C`, 0.001),
        M: outcome(midBeatsTop ? 1 : i < 2 ? 1 : 0, `answer ${id} from M`, 0.002),
        T: outcome(midBeatsTop ? (i < 2 ? 1 : 0) : 1, `answer ${id} from T`, 0.01),
      },
    }));
  const map = { cheap: 'C', mid: 'M', top: 'T' };

  test('a middle tier that beats the top one: refused with the reason, in the report and the table', async () => {
    const ws = workspace(rows(true), THREE_TIERS);
    const { report } = await runEval({ ...ws, route: 'qa', map, split: 'test', sweep: 0 });
    // medium scores 1.0 on every row, large 0.5: the "gap" from small to large is not the one to close.
    assert.match(report.curve_metrics_refused ?? '', /top tier is not the best on these rows \(medium scores 1\.000, the top tier large 0\.500\)/);
    for (const column of ['policy', 'random_equal_cost', 'oracle'] as const) {
      const m = report.curve_metrics[column];
      assert.deepEqual([m.pgr, m.apgr, m.cpt50, m.cpt80], [null, null, null, null], column);
      assert.ok(m.aiq !== null, `${column}: AIQ needs no monotone ladder`);
    }
    const table = terminalReport(report);
    assert.match(table, /gap closed \(PGR\)\s*│\s*│ refused †/);
    assert.match(table, /APGR\s*│\s*│ refused †/);
    assert.match(table, /^† the top tier is not the best/m);
    assert.ok(
      report.notes.some((n) => /not reported/.test(n)),
      report.notes.join('\n'),
    );
    // The policy (rows a, c → small; b, d → medium) is at quality 0.75 against always-best 0.5:
    // the raw PGR formula would print (0.75 − 0.25) / (0.5 − 0.25) = 2 here.
    close(report.metrics.mean_quality, 0.75, 'policy quality');
  });

  test('a monotone ladder gets its numbers', async () => {
    const ws = workspace(rows(false), THREE_TIERS);
    const { report } = await runEval({ ...ws, route: 'qa', map, split: 'test', sweep: 0 });
    assert.equal(report.curve_metrics_refused, null);
    // Policy: a → C (1), b → M (1), c → C (0), d → M (0): quality 0.5; weak 0.25, strong 1.
    close(report.curve_metrics.policy.pgr ?? Number.NaN, (0.5 - 0.25) / (1 - 0.25), 'gap closed');
    assert.ok(report.curve_metrics.policy.apgr !== null);
    assert.doesNotMatch(terminalReport(report), /refused/);
    assert.equal(
      pgrRefusal([
        {
          id: 'x',
          tiers: [
            { quality: 0.3, cost: 1 },
            { quality: 0.9, cost: 2 },
          ],
        },
      ]),
      null,
    );
    assert.match(
      pgrRefusal(
        [
          {
            id: 'x',
            tiers: [
              { quality: 0.9, cost: 1 },
              { quality: 0.3, cost: 2 },
            ],
          },
        ],
        ['s', 'l'],
      ) ?? '',
      /s scores 0\.900, the top tier l 0\.300/,
    );
  });
});

// ---------------------------------------------------------------------------
// The default gate never reads a recorded score
// ---------------------------------------------------------------------------

const GATED = `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, profiles: { unused: { capability: 0.5, first_token_ms: 0, tokens_per_second: 1000 } } }
models:
  weak: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  strong: { provider: sim, price: { input_per_mtok: 10, output_per_mtok: 20 } }
tiers:
  - { name: small, models: [weak] }
  - { name: large, models: [strong] }
routes:
  qa:
    router:
      plugin: rules
      rules:
        - { when: "metadata.meta.routerbench_oracle_model = 'S'", tier: large, reason: reads the answer key }
    default: small
    gate:
      evaluators:
        - plugin: regex
          must_match: ["[0-9]"]
      threshold: 0.5
      max_escalations: 1
`;

// Digits pass the regex gate; words fail it. Scores are set so that the gate is right on
// some rows and wrong on others, and every row names the strong model as its "oracle".
const GATED_ROWS: DatasetRow[] = [
  {
    id: 'r1',
    split: 'test',
    prompt: 'What is 2 + 2?',
    meta: { routerbench_oracle_model: 'S' },
    outcomes: { W: outcome(1, 'It is 4.', 0.001), S: outcome(1, 'The answer is 4.', 0.01) },
  },
  {
    id: 'r2',
    split: 'test',
    prompt: 'What is 3 × 4?',
    meta: { routerbench_oracle_model: 'S' },
    outcomes: { W: outcome(0, 'It is 13.', 0.001), S: outcome(1, 'It is 12.', 0.01) },
  },
  {
    id: 'r3',
    split: 'test',
    prompt: 'Name a colour.',
    meta: { routerbench_oracle_model: 'S' },
    outcomes: { W: outcome(1, 'Blue.', 0.001), S: outcome(1, 'Red, for instance.', 0.01) },
  },
  {
    id: 'r4',
    split: 'test',
    prompt: 'Spell seven.',
    meta: { routerbench_oracle_model: 'S' },
    outcomes: { W: outcome(0, 'sevn', 0.001), S: outcome(0, 'Seven, or 7.', 0.01) },
  },
];

function inverted(rows: DatasetRow[]): DatasetRow[] {
  return rows.map((row) => ({
    ...row,
    outcomes: Object.fromEntries(
      Object.entries(row.outcomes).map(([model, o]) => [model, { ...o, score: typeof o.score === 'number' ? 1 - o.score : o.score }]),
    ),
  }));
}

/** What the policy did on each row, without what the answer key says of it. */
function decisions(rows: RowRun[]): unknown[] {
  return rows.map(({ id, firstTier, servedTier, escalated, firstPassedGate, calls, cost, gate }) => ({
    id,
    firstTier,
    servedTier,
    escalated,
    firstPassedGate,
    calls,
    cost,
    gate,
  }));
}

describe('the default gate reads no recorded score', () => {
  const settings = (data: DatasetRow[]): Partial<EvalSettings> & { config: string; data: string } => ({
    ...workspace(data, GATED),
    route: 'qa',
    map: { weak: 'W', strong: 'S' },
    split: 'test',
    sweep: 0,
  });

  test('inverting every recorded score changes the reported quality, never what the policy does', async () => {
    const straight = await runEval(settings(GATED_ROWS) as EvalSettings);
    const flipped = await runEval(settings(inverted(GATED_ROWS)) as EvalSettings);
    assert.equal(straight.report.gate.mode, 'real');
    assert.deepEqual(decisions(flipped.rows), decisions(straight.rows));
    // By hand: r1 "4" passes (weak, 1); r2 "13" passes (weak, 0); r3 "Blue." fails → strong (1);
    // r4 "sevn" fails → strong (0). The answer-key meta (routerbench_oracle_model) routes nothing.
    assert.deepEqual(
      straight.rows.map((r) => [r.id, r.firstTier, r.servedTier]),
      [
        ['r1', 0, 0],
        ['r2', 0, 0],
        ['r3', 0, 1],
        ['r4', 0, 1],
      ],
    );
    close(straight.report.metrics.mean_quality, 2 / 4, 'quality on the true scores');
    close(flipped.report.metrics.mean_quality, 2 / 4, 'quality on the inverted scores (1 − 0, 1 − 1, 1 − 1, 1 − 0)');
    assert.deepEqual(
      straight.rows.map((r) => r.quality),
      [1, 0, 1, 0],
    );
    assert.deepEqual(
      flipped.rows.map((r) => r.quality),
      [0, 1, 0, 1],
    );
    close(straight.report.metrics.total_cost, flipped.report.metrics.total_cost, 'cost');

    // The perfect judge, by contrast, is the answer key: its decisions follow the scores.
    const judge = straight.report.baselines.perfect_judge!;
    const judgeFlipped = flipped.report.baselines.perfect_judge!;
    assert.equal(judge.label, PERFECT_JUDGE);
    // True scores: r1 pass (1), r2 fail → strong (1), r3 pass (1), r4 fail → strong (0) = 3/4.
    close(judge.mean_quality, 3 / 4, 'perfect judge on the true scores');
    // Inverted: r1 fail → strong (0), r2 pass (1), r3 fail → strong (0), r4 pass (1) = 2/4.
    close(judgeFlipped.mean_quality, 2 / 4, 'perfect judge on the inverted scores');
    // And --gate recorded makes that judge the policy measured, named as such: there the
    // inversion flips every decision, which is what the default must never do.
    const recorded = await runEval({ ...(settings(GATED_ROWS) as EvalSettings), gate: 'recorded' });
    const recordedFlipped = await runEval({ ...(settings(inverted(GATED_ROWS)) as EvalSettings), gate: 'recorded' });
    const served = (rows: RowRun[]) => rows.map((r) => r.servedTier);
    assert.deepEqual(served(recorded.rows), [0, 1, 0, 1]);
    assert.deepEqual(served(recordedFlipped.rows), [1, 0, 1, 0]);
    assert.match(terminalReport(recorded.report), /policy with the perfect judge \(upper bound\)/);
    assert.match(terminalReport(straight.report), /│ perfect judge \(upper bound\) │ oracle \(upper bound\) │/);
  });

  test('--gate auto is refused with why', async () => {
    await assert.rejects(
      runEval({ ...(settings(GATED_ROWS) as EvalSettings), gate: 'auto' as never }),
      (err: unknown) =>
        err instanceof TiergateError &&
        err.code === 'TG_ERR_EVAL_OPTIONS' &&
        /auto is gone: it gated the rows without answer texts on their recorded scores/.test(err.message),
    );
  });

  test('a sweep whose points do not move says so; one that moves does not', async () => {
    const always = GATED.replace('must_match: ["[0-9]"]', 'must_match: ["."]'); // every answer has a character: the gate passes all
    const still = await runEval({ ...workspace(GATED_ROWS, always), route: 'qa', map: { weak: 'W', strong: 'S' }, split: 'test', sweep: 5 });
    assert.equal(still.report.sweep.length, 5);
    assert.equal(still.report.sweep_moves, false);
    assert.ok(
      still.report.notes.some((n) => /the sweep does not move: all 5 gate thresholds give the same point/.test(n)),
      still.report.notes.join('\n'),
    );
    assert.match(terminalReport(still.report), /threshold sweep — it does not move: all 5 thresholds give the same point/);
    const svg = await chartSvg(still.report);
    assert.ok(svg.includes('sweep does not move'), 'the chart says it too');

    const moving = await runEval({ ...(settings(GATED_ROWS) as EvalSettings), sweep: 3 });
    assert.equal(moving.report.sweep_moves, true, 'threshold 0 passes every answer, 0.5 escalates the wordy ones');
    assert.ok(!moving.report.notes.some((n) => /does not move/.test(n)));
  });

  test("the chart shows the policy, the hull, the perfect judge and the oracle — the table's oracle", async () => {
    const { report } = await runEval({ ...(settings(GATED_ROWS) as EvalSettings), sweep: 3 });
    const svg = await chartSvg(report);
    for (const name of ['policy (sweep)', 'random at equal cost (tier hull)', 'perfect judge (upper bound)', 'oracle (upper bound)'])
      assert.ok(svg.includes(name), name);
    assert.deepEqual(
      report.curves.oracle.map((p) => [p.cost, p.quality]),
      [[report.baselines.oracle.total_cost, report.baselines.oracle.mean_quality]],
      "one oracle: the chart plots the table's",
    );
    assert.deepEqual(
      report.curves.perfect_judge.map((p) => p.quality),
      [report.baselines.perfect_judge!.mean_quality],
    );
  });
});

// ---------------------------------------------------------------------------
// Real data (../shared/data; skipped when absent)
// ---------------------------------------------------------------------------

const ROUTELLM_POLICY = path.join(repoRoot, 'examples/routellm/gateway.yaml');

describe('on the shared data', () => {
  test(
    'RouteLLM GSM8K test split, default gate: no row gated on a recorded score; the perfect judge is the bound above it',
    { skip: existsSync(ROUTELLM) ? false : `no ${ROUTELLM}: the shared data is absent` },
    async () => {
      const { report } = await runEval({
        config: ROUTELLM_POLICY,
        data: ROUTELLM,
        route: 'qa',
        split: 'test',
        where: "source = 'gsm8k'",
        sweep: 3,
        env: { OPENAI_API_KEY: 'unused', TOGETHER_API_KEY: 'unused' },
      });
      assert.equal(report.gate.mode, 'real');
      assert.equal(report.gate.recorded_rows, 0);
      assert.equal(report.gate.unjudgeable_rows, 0, 'GSM8K rows carry both answers');
      assert.equal(report.dataset.evaluated, report.dataset.selected);
      const judge = report.baselines.perfect_judge!;
      assert.ok(judge.mean_quality >= report.metrics.mean_quality, `perfect judge ${judge.mean_quality} vs policy ${report.metrics.mean_quality}`);
      // Two tiers, GPT-4 dearer and better: the hull is the cheapest–top line, so the
      // baseline spends the policy's cost along it.
      assert.deepEqual(
        report.tier_points.map((t) => t.on_hull),
        [true, true],
      );
      close(report.baselines.random_equal_cost.total_cost, report.metrics.total_cost, 'equal cost', 1e-9);
    },
  );

  test(
    'RouteLLM, all sources: rows without answer texts are left out and counted, not judged by the answer key',
    { skip: existsSync(ROUTELLM) ? false : `no ${ROUTELLM}: the shared data is absent` },
    async () => {
      const { report } = await runEval({
        config: ROUTELLM_POLICY,
        data: ROUTELLM,
        route: 'qa',
        split: 'test',
        where: "source = 'gsm8k' or subset = 'anatomy'",
        sweep: 0,
        env: { OPENAI_API_KEY: 'unused', TOGETHER_API_KEY: 'unused' },
      });
      const rows = loadDataset(ROUTELLM).rows.filter((r) => r.split === 'test' && (r.source === 'gsm8k' || r.subset === 'anatomy'));
      const textless = rows.filter((r) => Object.values(r.outcomes).some((o) => typeof o.score === 'number' && typeof o.response !== 'string')).length;
      assert.ok(textless > 0);
      assert.equal(report.gate.unjudgeable_rows, textless);
      assert.equal(report.dataset.evaluated, rows.length - textless);
      assert.equal(report.gate.recorded_rows, 0);
    },
  );

  test(
    'RouterBench, three tiers: the hull baseline is at least the cheapest/top mix at equal cost, and the middle tier is on it',
    { skip: existsSync(ROUTERBENCH) ? false : `no ${ROUTERBENCH}: the shared data is absent` },
    () => {
      const models = ['mistralai/mistral-7b-chat', 'mistralai/mixtral-8x7b-chat', 'gpt-4-1106-preview'];
      const rows: RowOutcomes[] = loadDataset(ROUTERBENCH)
        .rows.filter((r) => r.split === 'test' && models.every((m) => scoreOf(r, m) !== null && typeof r.outcomes[m].cost_usd === 'number'))
        .map((r) => ({ id: r.id, tiers: models.map((m) => ({ quality: scoreOf(r, m) as number, cost: r.outcomes[m].cost_usd as number })) }));
      assert.ok(rows.length > 900, `${rows.length} rows`);
      assert.deepEqual(
        tierHull(rows).map((p) => p.tier),
        [0, 1, 2],
        'Mixtral is on the hull between Mistral-7B and GPT-4',
      );
      const weakCost = rows.reduce((s, r) => s + r.tiers[0].cost, 0);
      const topCost = rows.reduce((s, r) => s + r.tiers[2].cost, 0);
      const weakQ = rows.reduce((s, r) => s + r.tiers[0].quality, 0) / rows.length;
      const topQ = rows.reduce((s, r) => s + r.tiers[2].quality, 0) / rows.length;
      for (const share of [0.1, 0.3, 0.5, 0.7]) {
        const cost = weakCost + share * (topCost - weakCost);
        const hull = baselines(rows, 0.5, cost).random_equal_cost;
        const line = (1 - share) * weakQ + share * topQ;
        close(hull.cost, cost, `equal cost at ${share}`, 1e-9);
        assert.ok(hull.quality > line, `at ${share}: hull ${hull.quality} vs cheapest/top ${line}`);
      }
    },
  );
});
