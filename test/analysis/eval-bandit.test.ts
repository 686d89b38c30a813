// `tiergate eval` measures routers that learn (issue 16, point 4): rows are replayed in
// order and each outcome reaches the router through the gateway's learning path, so the
// bandit's numbers are those of a bandit that learned — and the report gives its regret
// against the best fixed tier. Crafted rows whose every decision follows by hand.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { regretOf, runEval } from '../../src/analysis/eval/runner.ts';
import { terminalReport } from '../../src/analysis/eval/format.ts';
import type { DatasetRow } from '../../src/analysis/eval/dataset.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Greedy (ε = 0) bandit over two tiers, prior 0.6. The gate scores the share of its two
// patterns an answer matches and passes 0.5, so nothing escalates and the outcome of a
// row is the gate's score of the first tier's answer: 0.5 for the weak model's words,
// 1 for the strong model's number.
const policy = (stateFile: string | null) => `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, profiles: { unused: { capability: 0.5, first_token_ms: 0, tokens_per_second: 1000 } } }
models:
  weak: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  strong: { provider: sim, price: { input_per_mtok: 10, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [weak] }
  - { name: large, models: [strong] }
routes:
  qa:
    router: { plugin: bandit, epsilon: 0, prior: 0.6, seed: 1${stateFile ? `, state: { file: ${JSON.stringify(stateFile)} }` : ''} }
    default: small
    gate:
      evaluators: [{ plugin: regex, must_match: ["[0-9]", "it is"] }]
      threshold: 0.5
      max_escalations: 1
`;

// The weak model answers in words (gate score 0.5, and it is wrong), the strong one with
// the number (gate score 1, and it is right).
const ROWS: DatasetRow[] = Array.from({ length: 5 }, (_, i) => ({
  id: `q${i}`,
  split: 'test',
  prompt: `What is ${i} + ${i}?`,
  outcomes: {
    W: { score: 0, response: 'It is some number, I would say.', cost_usd: 0.001 },
    S: { score: 1, response: `It is ${2 * i}.`, cost_usd: 0.01 },
  },
}));

function workspace(stateFile: string | null = null, rows: DatasetRow[] = ROWS): { config: string; data: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-eval-bandit-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'gateway.yaml'), policy(stateFile));
  writeFileSync(path.join(dir, 'outcomes.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { dir, config: path.join(dir, 'gateway.yaml'), data: path.join(dir, 'outcomes.jsonl') };
}

describe('eval teaches a learning router as it replays, and reports its regret', () => {
  test('the bandit learns from the gate row after row: small once (score 0.5), then large', async () => {
    const { report, rows } = await runEval({ ...workspace(), route: 'qa', map: { weak: 'W', strong: 'S' }, split: 'test', sweep: 0 });
    // Row 1: both arms at the prior 0.6, the tie goes to the cheapest: small. Its answer
    // scores 0.5: small's mean is 0.5, large's still the prior 0.6, so every later row
    // goes to large, whose answers score 1. On its prior alone the bandit would send all
    // five rows to small.
    assert.deepEqual(
      rows.map((r) => r.firstTier),
      [0, 1, 1, 1, 1],
    );
    assert.ok(rows.every((r) => !r.escalated));
    assert.equal(report.regret.learned, true);
    assert.equal(report.regret.outcomes_taught, 5);
    // Best fixed tier: large (quality 5 against 0). The policy lost 1 − 0 on the first row only.
    assert.equal(report.regret.best_fixed_tier, 'large');
    assert.equal(report.regret.lambda, 0);
    assert.equal(report.regret.total, 1);
    assert.deepEqual(
      report.regret.curve.map((c) => [c.rows, c.regret]),
      [
        [1, 1],
        [2, 1],
        [3, 1],
        [4, 1],
        [5, 1],
      ],
    );
    assert.ok(
      report.notes.some((n) => /router bandit learned as it routed/.test(n)),
      report.notes.join('\n'),
    );
    assert.match(terminalReport(report), /regret against the best fixed tier \(large; reward = recorded quality − 0·cost_usd·1000\): 1\.00 over 5 rows/);
  });

  test('it learns from the gate, not from the answer key: inverted recorded scores leave its decisions as they were', async () => {
    const inverted = ROWS.map((r) => ({ ...r, outcomes: { W: { ...r.outcomes.W, score: 1 }, S: { ...r.outcomes.S, score: 0 } } }));
    const { rows } = await runEval({ ...workspace(null, inverted), route: 'qa', map: { weak: 'W', strong: 'S' }, split: 'test', sweep: 0 });
    assert.deepEqual(
      rows.map((r) => r.firstTier),
      [0, 1, 1, 1, 1],
    );
  });

  test("the eval neither reads nor writes the router's production state", async () => {
    const ws = workspace();
    const stateFile = path.join(ws.dir, 'bandit-state.json');
    // A state that prefers large from the start: were it read, row 1 would go to large.
    writeFileSync(stateFile, JSON.stringify({ arms: { large: { mean: 1, count: 100 }, small: { mean: 0, count: 100 } }, linucb: {} }));
    const before = JSON.stringify(JSON.parse(readFileSync(stateFile, 'utf8')));
    writeFileSync(ws.config, policy(stateFile));
    const { rows } = await runEval({ ...ws, route: 'qa', map: { weak: 'W', strong: 'S' }, split: 'test', sweep: 0 });
    assert.equal(rows[0].firstTier, 0, 'started from nothing');
    await new Promise((resolve) => setTimeout(resolve, 300)); // past the state's write debounce
    const after = JSON.stringify(JSON.parse(readFileSync(stateFile, 'utf8')));
    assert.equal(after, before, 'the state file is untouched');
  });

  test('regretOf by hand, with a cost weight', () => {
    const rows = [
      {
        id: 'a',
        tiers: [
          { quality: 1, cost: 0.001 },
          { quality: 1, cost: 0.01 },
        ],
      },
      {
        id: 'b',
        tiers: [
          { quality: 0, cost: 0.001 },
          { quality: 1, cost: 0.01 },
        ],
      },
    ];
    const results = [
      { id: 'a', firstTier: 1, servedTier: 1, quality: 1, cost: 0.01, escalated: false, firstPassedGate: null },
      { id: 'b', firstTier: 0, servedTier: 0, quality: 0, cost: 0.001, escalated: false, firstPassedGate: null },
    ];
    // λ = 0.05: reward = q − 0.05·cost·1000 → small: (1 − 0.05) + (0 − 0.05) = 0.9; large: 2·(1 − 0.5) = 1.
    const r = regretOf(rows, results, 0.05, ['small', 'large']);
    assert.equal(r.best_fixed_tier, 'large');
    // Policy: (1 − 0.5) + (0 − 0.05) = 0.45 → regret 1 − 0.45 = 0.55.
    assert.ok(Math.abs(r.total - 0.55) < 1e-12, String(r.total));
    assert.ok(Math.abs(r.per_row - 0.275) < 1e-12);
  });
});
