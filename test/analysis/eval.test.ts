// `tiergate eval`: recorded outcomes through the real router, gates and ladder. A small
// crafted dataset whose every number is known gives exact per-row routing, escalation
// and cost, and exact summary metrics, in both gate modes; then the command itself runs
// as a user runs it (a child process), on the crafted data and on a slice of the real
// RouteLLM data in ../shared/data (skipped when it is absent).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TiergateError } from '../../src/common/errors.ts';
import { runEval, type EvalSettings, type RowRun } from '../../src/analysis/eval/runner.ts';
import type { DatasetRow, RecordedOutcome } from '../../src/analysis/eval/dataset.ts';
import { type UpstreamError, isUpstreamError, type ChatRequest, type ModelSpec } from '../../src/plugin-contract/plugin-api.ts';
import replay from '../../plugins/providers/replay/index.ts';
import { collect, testPluginContext } from '../support/plugin-context.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const ROUTELLM = path.resolve(repoRoot, '../shared/data/routellm_gpt4_vs_mixtral.jsonl');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Two weak models in the small tier (failover) and one strong model. The gate: the
// heuristics evaluator, and a JSONata check that a math answer contains a number.
const POLICY = `version: 1
providers:
  sim:
    plugin: simulator
    time_scale: 0
    profiles:
      unused: { capability: 0.5, first_token_ms: 0, tokens_per_second: 1000 }
models:
  weak-a: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  weak-b: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  strong: { provider: sim, price: { input_per_mtok: 10, output_per_mtok: 20 } }
tiers:
  - { name: small, models: [weak-a, weak-b] }
  - { name: large, models: [strong] }
features:
  source: metadata.source
routes:
  qa:
    router:
      plugin: rules
      rules:
        - { when: "source = 'hard'", tier: large, reason: hard questions go to the strong model }
    default: small
    gate:
      evaluators:
        - plugin: heuristics
        - plugin: jsonata
          name: has_number
          when: "source = 'math'"
          expression: "$contains(answer, /[0-9]/)"
      combine: min
      threshold: 0.5
      max_escalations: 1
`;

const MAP = { 'weak-a': 'A', 'weak-b': 'B', strong: 'S' };

function outcome(score: number | null, response: string | undefined, cost: number | undefined): RecordedOutcome {
  return { score, cost_usd: cost ?? null, input_tokens: null, output_tokens: null, ...(response !== undefined ? { response } : {}) };
}

const ROWS: DatasetRow[] = [
  {
    // Right, but says it in words: the JSONata gate fails it, the recorded score passes it.
    id: 'easy',
    source: 'math',
    split: 'test',
    prompt: 'What is 2 + 2? Reply in a short sentence.',
    outcomes: {
      A: outcome(1, 'Two plus two makes four, as everyone knows.', 0.001),
      B: outcome(1, 'Two plus two is four.', 0.001),
      S: outcome(1, 'The answer is 4: two plus two.', 0.01),
    },
  },
  {
    // Wrong and hedged: every gate fails it.
    id: 'hedge',
    source: 'math',
    split: 'test',
    prompt: 'What is 3 × 4? Explain briefly.',
    outcomes: {
      A: outcome(0, "I'm not sure, but it might be 7 or so.", 0.001),
      B: outcome(0, 'Maybe 7.', 0.001),
      S: outcome(1, 'The answer is 12, since 3 × 4 = 12.', 0.01),
    },
  },
  {
    // Wrong but confident: the real gate lets it through, the recorded score does not.
    id: 'wrong',
    source: 'math',
    split: 'test',
    prompt: 'What is 6 × 7? Show the product.',
    outcomes: {
      A: outcome(0, 'The answer is 41, computed carefully step by step.', 0.002),
      B: outcome(0, '41.', 0.002),
      S: outcome(1, 'The answer is 42, computed carefully step by step.', 0.02),
    },
  },
  {
    // Routed straight to the strong model by the rules.
    id: 'hard',
    source: 'hard',
    split: 'test',
    prompt: 'Evaluate the integral of sin(x) from 0 to pi.',
    outcomes: {
      A: outcome(0, 'It is 0 because sine is symmetric around zero.', 0.001),
      B: outcome(0, 'It is 0.', 0.001),
      S: outcome(1, 'The integral evaluates to 2, by symmetry of the two halves.', 0.03),
    },
  },
  {
    // A has no result: the small tier fails over to B.
    id: 'failover',
    source: 'math',
    split: 'test',
    prompt: 'What is 10 - 3? One sentence, please.',
    outcomes: { A: outcome(null, undefined, undefined), B: outcome(1, '10 - 3 = 7, which is seven.', 0.0015), S: outcome(1, 'Ten minus three is 7.', 0.01) },
  },
  {
    id: 'train-1',
    source: 'math',
    split: 'train',
    prompt: 'What is 1 + 1? One sentence.',
    outcomes: { A: outcome(1, '1 + 1 = 2, as usual in arithmetic.', 0.001), B: outcome(1, '2.', 0.001), S: outcome(1, 'It is 2.', 0.01) },
  },
];

function workspace(rows: DatasetRow[] = ROWS, policy = POLICY): { dir: string; config: string; data: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-eval-'));
  dirs.push(dir);
  const config = path.join(dir, 'gateway.yaml');
  const data = path.join(dir, 'outcomes.jsonl');
  writeFileSync(config, policy);
  writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { dir, config, data };
}

function evalOf(settings: Partial<EvalSettings> & { config: string; data: string }) {
  return runEval({ route: 'qa', map: MAP, split: 'test', sweep: 0, ...settings });
}

function byId(rows: RowRun[]): Record<string, RowRun> {
  return Object.fromEntries(rows.map((r) => [r.id, r]));
}

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-12, `${what}: ${actual} ≠ ${expected}`);
}

function checkRow(row: RowRun, expected: Partial<RowRun>): void {
  const { cost, ...exact } = expected;
  for (const [key, value] of Object.entries(exact)) assert.deepEqual(row[key as keyof RowRun], value, `${row.id}.${key}`);
  if (cost !== undefined) close(row.cost, cost, `${row.id}.cost`);
}

describe('tiergate eval on a crafted dataset', () => {
  test('recorded gate: every row routed, escalated and priced as the ladder does; the four metrics follow', async () => {
    const ws = workspace();
    const { report, rows } = await evalOf({ ...ws, gate: 'recorded' });
    const r = byId(rows);
    assert.deepEqual(Object.keys(r).sort(), ['easy', 'failover', 'hard', 'hedge', 'wrong']);
    checkRow(r.easy, { firstTier: 0, servedTier: 0, quality: 1, cost: 0.001, escalated: false, firstPassedGate: true, calls: ['weak-a'], gate: 'recorded' });
    checkRow(r.hedge, { firstTier: 0, servedTier: 1, quality: 1, cost: 0.011, escalated: true, firstPassedGate: false, calls: ['weak-a', 'strong'] });
    checkRow(r.wrong, { firstTier: 0, servedTier: 1, quality: 1, cost: 0.022, escalated: true, firstPassedGate: false });
    checkRow(r.hard, { firstTier: 1, servedTier: 1, quality: 1, cost: 0.03, escalated: false, firstPassedGate: true, calls: ['strong'] });
    // weak-a has no recorded result: 503, failover to weak-b in the same tier; the failed call costs nothing.
    checkRow(r.failover, {
      firstTier: 0,
      servedTier: 0,
      quality: 1,
      cost: 0.0015,
      escalated: false,
      firstPassedGate: true,
      calls: ['weak-a', 'weak-b'],
      servedModel: 'weak-b',
    });

    const m = report.metrics;
    assert.equal(m.rows, 5);
    close(m.routing_accuracy, 3 / 5, 'routing accuracy'); // oracle tiers 0,1,1,1,0; first tiers 0,0,0,1,0
    close(m.total_cost, 0.0655, 'total cost');
    close(m.always_best_cost, 0.08, 'always-best cost');
    close(m.cost_savings, 1 - 0.0655 / 0.08, 'cost savings');
    close(m.quality_retention, 1, 'quality retention');
    close(m.escalation_rate, 2 / 5, 'escalation rate');
    close(m.strong_call_share, 3 / 5, 'strong-call share');
    assert.deepEqual(m.meets, { routing_accuracy: false, cost_savings: false, quality_retention: true, escalation_rate: false });
    close(
      report.baselines.always_cheapest.total_cost,
      0.001 + 0.001 + 0.002 + 0.001 + 0.0015,
      'always-cheapest cost (the tier serves B where A has no result)',
    );
    close(report.baselines.always_cheapest.mean_quality, 2 / 5, 'always-cheapest quality');
    close(report.baselines.oracle.routing_accuracy, 1, 'oracle accuracy');
    assert.deepEqual(
      { ...report.gate_accuracy, precision: undefined, recall: undefined },
      { precision: undefined, recall: undefined, tp: 3, fp: 0, fn: 0, tn: 2, gated: 5 },
    );
    assert.deepEqual({ mode: report.gate.mode, real: report.gate.real_rows, recorded: report.gate.recorded_rows }, { mode: 'recorded', real: 0, recorded: 5 });
    assert.equal(report.costs.estimated, false);
    assert.deepEqual(report.tiers, [
      { name: 'small', model: 'weak-a', dataset_model: 'A' },
      { name: 'large', model: 'strong', dataset_model: 'S' },
    ]);
    assert.ok(
      report.notes.some((n) => /recorded scores/.test(n)),
      report.notes.join('\n'),
    );
  });

  test('real gate (the default): the heuristics and JSONata evaluators judge the recorded answer texts', async () => {
    const ws = workspace();
    const { report, rows } = await evalOf({ ...ws });
    const r = byId(rows);
    // easy: right but no digit → has_number fails it → escalated (a false negative of the gate).
    checkRow(r.easy, { firstTier: 0, servedTier: 1, quality: 1, cost: 0.011, escalated: true, firstPassedGate: false, gate: 'real' });
    // hedge: the heuristics catch the hedge.
    checkRow(r.hedge, { servedTier: 1, quality: 1, cost: 0.011, escalated: true, firstPassedGate: false });
    // wrong: confident and numeric, so it passes and the wrong answer is served.
    checkRow(r.wrong, { servedTier: 0, quality: 0, cost: 0.002, escalated: false, firstPassedGate: true });
    checkRow(r.hard, { servedTier: 1, quality: 1, cost: 0.03, escalated: false, firstPassedGate: true });
    checkRow(r.failover, { servedTier: 0, quality: 1, cost: 0.0015, escalated: false, firstPassedGate: true });
    const m = report.metrics;
    close(m.cost_savings, 1 - 0.0555 / 0.08, 'cost savings');
    close(m.quality_retention, 4 / 5, 'quality retention');
    close(m.escalation_rate, 2 / 5, 'escalation rate');
    const g = report.gate_accuracy!;
    assert.deepEqual([g.tp, g.fp, g.fn, g.tn], [2, 1, 1, 1]);
    close(g.precision, 2 / 3, 'precision');
    close(g.recall, 2 / 3, 'recall');
    assert.deepEqual(
      { mode: report.gate.mode, real: report.gate.real_rows, recorded: report.gate.recorded_rows, unjudgeable: report.gate.unjudgeable_rows },
      { mode: 'real', real: 5, recorded: 0, unjudgeable: 0 },
    );
    assert.deepEqual(report.policy.gate_evaluators, ['heuristics', 'has_number']);
  });

  test('--split, --where and --limit select the rows', async () => {
    const ws = workspace();
    const train = await evalOf({ ...ws, split: 'train' });
    assert.deepEqual(
      train.rows.map((r) => r.id),
      ['train-1'],
    );
    const all = await evalOf({ ...ws, split: 'all', gate: 'recorded' });
    assert.equal(all.rows.length, 6);
    const hard = await evalOf({ ...ws, where: "source = 'hard' or id = 'easy'" });
    assert.deepEqual(hard.rows.map((r) => r.id).sort(), ['easy', 'hard']);
    assert.equal(hard.report.dataset.where, "source = 'hard' or id = 'easy'");
    const limited = await evalOf({ ...ws, limit: 2 });
    assert.deepEqual(
      limited.rows.map((r) => r.id),
      ['easy', 'hedge'],
    );
    await assert.rejects(
      evalOf({ ...ws, where: "source = 'nothing'" }),
      (err: unknown) => err instanceof TiergateError && err.code === 'TG_ERR_EVAL_OPTIONS' && /no rows to evaluate/.test(err.message),
    );
    await assert.rejects(
      evalOf({ ...ws, where: 'source = (' }),
      (err: unknown) => err instanceof TiergateError && err.code === 'TG_ERR_EVAL_OPTIONS' && /--where/.test(err.message),
    );
  });

  test('mapping errors name the model and what would fix it', async () => {
    const ws = workspace();
    const mapping = (map: Record<string, string>) =>
      evalOf({ ...ws, map }).then(
        () => assert.fail('expected a mapping error'),
        (err: unknown) => {
          assert.ok(err instanceof TiergateError, String(err));
          assert.equal(err.code, 'TG_ERR_EVAL_MAPPING');
          return err.message;
        },
      );
    assert.match(
      await mapping({ 'weak-a': 'A', strong: 'S' }),
      /policy model "weak-b" has no dataset model: give --map weak-b=<dataset model> \(dataset models: .*A.*B.*S/,
    );
    assert.match(await mapping({ ...MAP, strong: 'gpt-5' }), /--map strong=gpt-5: the dataset has no model "gpt-5" \(models: /);
    assert.match(await mapping({ ...MAP, ghost: 'S' }), /--map ghost=S: the policy has no model "ghost"/);
    await assert.rejects(
      evalOf({ ...ws, route: 'nope' }),
      (err: unknown) => err instanceof TiergateError && err.code === 'TG_ERR_EVAL_OPTIONS' && /no route "nope" \(routes: qa\)/.test(err.message),
    );
  });

  test('without recorded costs, each call is priced from the policy: tokens of prompt and answer × price', async () => {
    const prompt = 'abcdefgh'; // 2 tokens + 4 for the message = 6 prompt tokens
    const rows: DatasetRow[] = [
      {
        id: 'priced',
        source: 'trivia',
        split: 'test',
        prompt,
        outcomes: { A: { score: 1, output_chars: 40 }, B: { score: 1 }, S: { score: 1, output_tokens: 3 } },
      },
      {
        id: 'texts',
        source: 'trivia',
        split: 'test',
        prompt,
        outcomes: {
          A: { score: 0, response: 'I have no idea, sorry.' },
          B: { score: 0, response: 'No.' },
          S: { score: 1, response: 'A full and careful answer.' },
        },
      },
    ];
    // The textless row is priced where the recorded score gates it (the perfect judge), and
    // left out, counted, where a real gate would have to judge a text it does not have.
    const ws = workspace(rows);
    const { report, rows: runs, outcomes } = await evalOf({ ...ws, gate: 'recorded' });
    const r = byId(runs);
    // weak-a: 6 prompt tokens × $1/M + 10 completion tokens (40 characters) × $2/M.
    checkRow(r.priced, { servedTier: 0, cost: (6 * 1 + 10 * 2) / 1e6, gate: 'recorded', costEstimated: true });
    // weak-a scores 0 → the perfect judge escalates: 6 + 6 tokens at weak prices, then 6 + 7 at strong prices.
    checkRow(r.texts, { servedTier: 1, escalated: true, gate: 'recorded', cost: (6 * 1 + 6 * 2) / 1e6 + (6 * 10 + 7 * 20) / 1e6 });
    const priced = outcomes.find((o) => o.id === 'priced')!;
    close(priced.tiers[1].cost, (6 * 10 + 3 * 20) / 1e6, 'strong tier cost from recorded output tokens');
    assert.equal(priced.tiers[1].costEstimated, true);
    assert.equal(report.costs.estimated, true);
    assert.ok(
      report.notes.some((n) => /costs estimated from the policy's prices/.test(n)),
      report.notes.join('\n'),
    );

    // The default, real gate: the hedge in weak-a's text escalates "texts" exactly as the
    // perfect judge did; "priced" has no text, so it is left out and counted, never gated
    // on its recorded score.
    const real = await evalOf({ ...ws });
    assert.deepEqual(
      real.rows.map((x) => x.id),
      ['texts'],
    );
    checkRow(byId(real.rows).texts, { servedTier: 1, escalated: true, gate: 'real', cost: (6 * 1 + 6 * 2) / 1e6 + (6 * 10 + 7 * 20) / 1e6 });
    assert.deepEqual(
      { real: real.report.gate.real_rows, recorded: real.report.gate.recorded_rows, unjudgeable: real.report.gate.unjudgeable_rows },
      { real: 1, recorded: 0, unjudgeable: 1 },
    );
    assert.deepEqual(
      real.report.dataset.skipped.map((s) => [s.rows, s.examples]),
      [[1, ['priced']]],
    );
    assert.match(real.report.dataset.skipped[0].reason, /no answer text .* a real gate cannot judge it/);
    assert.ok(
      real.report.notes.some((n) => /1 of 2 selected rows left out/.test(n)),
      real.report.notes.join('\n'),
    );
  });

  test('a threshold sweep re-executes every row; threshold 0 escalates nothing', async () => {
    const ws = workspace();
    const { report } = await evalOf({ ...ws, gate: 'recorded', sweep: 3 });
    assert.deepEqual(
      report.sweep.map((p) => p.threshold),
      [0, 0.5, 1],
    );
    close(report.sweep[0].escalation_rate, 0, 'escalations at threshold 0');
    close(report.sweep[0].strong_share, 1 / 5, 'strong share at threshold 0 (only the rule for hard rows)');
    close(report.sweep[0].cost, 0.001 + 0.001 + 0.002 + 0.03 + 0.0015, 'cost at threshold 0');
    close(report.sweep[1].cost, report.metrics.total_cost, 'threshold 0.5 is the policy');
    assert.equal(report.curves.policy.length, 4);
    assert.ok(report.curve_metrics.policy.apgr !== null && report.curve_metrics.policy.aiq !== null);
  });

  test('a route without a gate: the routed tier answers, nothing escalates, nothing to sweep', async () => {
    const ws = workspace(ROWS, POLICY.replace(/    gate:\n(?:      .*\n|        .*\n)+/, ''));
    const { report, rows } = await evalOf({ ...ws, sweep: 3 });
    assert.deepEqual(
      rows.map((r) => [r.id, r.servedTier, r.escalated, r.firstPassedGate, r.gate]),
      [
        ['easy', 0, false, null, 'none'],
        ['hedge', 0, false, null, 'none'],
        ['wrong', 0, false, null, 'none'],
        ['hard', 1, false, null, 'none'],
        ['failover', 0, false, null, 'none'],
      ],
    );
    assert.equal(report.gate.mode, 'none');
    assert.equal(report.gate_accuracy, null);
    assert.deepEqual(report.sweep, []);
    assert.ok(
      report.notes.some((n) => /has no gate/.test(n)),
      report.notes.join('\n'),
    );
  });
});

describe('the replay provider', () => {
  const spec: ModelSpec = { name: 'weak-a', provider: 'replay', upstream: 'weak', price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 1000 };
  const duplicate: DatasetRow = { id: 'dup', prompt: ROWS[0].prompt, outcomes: { A: { score: 0, response: 'Five.' } } };
  const create = () =>
    replay.create(
      { rows: [...ROWS, duplicate], models: { weak: 'A' } },
      testPluginContext({ at: 'providers.replay', policy: { models: new Map([[spec.name, spec]]), tiers: [], featureNames: [] } }),
    );
  const request = (prompt: string, extra: Record<string, unknown> = {}): ChatRequest => ({
    model: 'weak',
    messages: [{ role: 'user', content: prompt }],
    ...extra,
  });
  const call = { model: spec, signal: new AbortController().signal };

  test('answers with the recorded text, usage and score of the row with this conversation', async () => {
    const provider = await create();
    const result = await provider.complete(request(ROWS[1].prompt as string), call);
    assert.equal(result.choices[0].message.content, "I'm not sure, but it might be 7 or so.");
    assert.equal(result.choices[0].finish_reason, 'stop');
    assert.deepEqual(result.tiergate_recorded, { row_id: 'hedge', dataset_model: 'A', score: 0, cost_usd: 0.001, has_response: true, usage_estimated: true });
    assert.deepEqual(result.usage, {
      prompt_tokens: 4 + Math.ceil((ROWS[1].prompt as string).length / 4),
      completion_tokens: Math.ceil(38 / 4),
      total_tokens: 4 + Math.ceil((ROWS[1].prompt as string).length / 4) + 10,
    });
    // A repeated conversation: the first row, unless the request pins one.
    assert.equal((await provider.complete(request(ROWS[0].prompt as string), call)).tiergate_recorded.row_id, 'easy');
    assert.equal((await provider.complete(request(ROWS[0].prompt as string, { tiergate_row_id: 'dup' }), call)).choices[0].message.content, 'Five.');
    const chunks = await collect(provider.stream(request(ROWS[1].prompt as string), call));
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), "I'm not sure, but it might be 7 or so.");
    assert.deepEqual(chunks.at(-1)?.usage, result.usage);
    await provider.dispose();
    await provider.dispose();
  });

  test('no result for the model is a 503 (fail over); an unknown conversation or model is a 404', async () => {
    const provider = await create();
    const failure = async (req: ChatRequest): Promise<UpstreamError> => {
      try {
        await provider.complete(req, call);
      } catch (err) {
        assert.ok(isUpstreamError(err), String(err));
        return err;
      }
      return assert.fail('expected an upstream error');
    };
    assert.equal((await failure(request(ROWS[4].prompt as string))).status, 503);
    assert.equal((await failure(request('never recorded'))).status, 404);
    assert.equal((await failure({ ...request(ROWS[0].prompt as string), model: 'C' })).status, 404);
    await provider.dispose();
  });
});

async function tiergate(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['bin/tiergate.js', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TIERGATE_LOG_LEVEL: 'error', ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const TARGET_ROWS = [/routing accuracy\s*│\s*> 90 %/, /cost savings\s*│\s*> 50 %/, /quality retention\s*│\s*> 98 %/, /escalation rate\s*│\s*< 25 %/];

describe('tiergate eval, the command', () => {
  test('prints the table and writes JSON, Markdown and an SVG chart; a mapping error exits 1', async () => {
    const ws = workspace();
    const out = (name: string) => path.join(ws.dir, name);
    const maps = Object.entries(MAP).flatMap(([k, v]) => ['--map', `${k}=${v}`]);
    const run = await tiergate([
      'eval',
      '-c',
      ws.config,
      '-d',
      ws.data,
      ...maps,
      '--split',
      'test',
      '--gate',
      'recorded',
      '--sweep',
      '3',
      '--json',
      out('report.json'),
      '--markdown',
      out('report.md'),
      '--chart',
      out('curve.svg'),
    ]);
    assert.equal(run.code, 0, run.stderr);
    for (const pattern of TARGET_ROWS) assert.match(run.stdout, pattern);
    assert.match(run.stdout, /gate: recorded — the perfect judge \(upper bound\): recorded scores stand in/);
    assert.match(run.stdout, /policy with the perfect judge \(upper bound\)/, 'the policy column says whose judgement it is');
    const report = JSON.parse(readFileSync(out('report.json'), 'utf8'));
    assert.equal(report.dataset.evaluated, 5);
    close(report.metrics.cost_savings, 1 - 0.0655 / 0.08, 'cost savings in the JSON');
    const markdown = readFileSync(out('report.md'), 'utf8');
    assert.match(markdown, /^\| routing accuracy \| > 90 % \| 60\.0 % ✗ \|/m);
    assert.match(markdown, /\| gate threshold \| strong-call share \|/);
    assert.match(markdown, /!\[cost–quality curve\]\(curve\.svg\)/);
    assert.ok(readFileSync(out('curve.svg'), 'utf8').startsWith('<svg'), 'an SVG document');

    const failed = await tiergate(['eval', '-c', ws.config, '-d', ws.data, '--map', 'weak-a=A']);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /model mapping: policy model "weak-b" has no dataset model.*\[TG_ERR_EVAL_MAPPING\]/);
  });

  test(
    'on a slice of the RouteLLM data: the four metrics with their targets',
    { skip: existsSync(ROUTELLM) ? false : `no ${ROUTELLM}: the shared data is absent` },
    async () => {
      const { config } = workspace(
        [],
        `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, profiles: { unused: { capability: 0.5, first_token_ms: 0, tokens_per_second: 1000 } } }
models:
  mixtral: { provider: sim, price: { input_per_mtok: 0.6, output_per_mtok: 0.6 } }
  gpt-4: { provider: sim, price: { input_per_mtok: 10, output_per_mtok: 30 } }
tiers:
  - { name: small, models: [mixtral] }
  - { name: large, models: [gpt-4] }
routes:
  qa:
    router: { plugin: rules, rules: [{ when: "metadata.source = 'mt-bench'", tier: large }] }
    default: small
    gate: { evaluators: [{ plugin: heuristics }], threshold: 0.5, max_escalations: 1 }
`,
      );
      const run = await tiergate([
        'eval',
        '-c',
        config,
        '-d',
        ROUTELLM,
        '--map',
        'mixtral=mistralai/Mixtral-8x7B-Instruct-v0.1',
        '--map',
        'gpt-4=gpt-4-1106-preview',
        '--split',
        'test',
        '--where',
        "source = 'gsm8k' or subset = 'anatomy'",
        '--limit',
        '400',
        '--sweep',
        '3',
      ]);
      assert.equal(run.code, 0, run.stderr);
      for (const pattern of TARGET_ROWS) assert.match(run.stdout, pattern);
      // GSM8K rows carry both answers' texts; MMLU (anatomy) rows carry none, so a real gate
      // cannot judge them: they are left out and counted, never gated on recorded scores.
      const evaluated = Number(/(\d+) rows evaluated of 400 selected \(15441 in the file; split test/.exec(run.stdout)?.[1]);
      const left = Number(/skipped (\d+) × no answer text for some model of the ladder: a real gate cannot judge it/.exec(run.stdout)?.[1]);
      assert.ok(evaluated > 0 && left > 0 && evaluated + left === 400, run.stdout);
      assert.match(run.stdout, /skipped \d+ × no answer text[^\n]*\(e\.g\. routellm\/mmlu\/anatomy\//);
      assert.match(run.stdout, /gate: real — the route's evaluators on the recorded answer texts of \d+ rows; no recorded score read/);
      assert.match(run.stdout, /perfect judge \(upper bound\)/, 'the upper bound is shown beside the policy, labelled');
      assert.match(run.stdout, /costs: estimated from policy prices/);
    },
  );
});
