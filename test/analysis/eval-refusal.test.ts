// A gate that refuses (gate.on_fail / input_checks.on_fail: refuse) in `tiergate eval`:
// a refused row is an error for the client, so it is counted, with quality 0 and every
// call made before the refusal paid, never left out of the figures.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runEval } from '../../src/analysis/eval/runner.ts';
import type { DatasetRow } from '../../src/analysis/eval/dataset.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const policy = (onFail: 'serve' | 'refuse') => `version: 1
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
    router: { plugin: rules, rules: [ { when: "true", tier: small, reason: cheap first } ] }
    default: small
    gate:
      evaluators: [{ plugin: regex, must_not_match: ["secret"] }]
      threshold: 0.5
      max_escalations: 1
      on_fail: ${onFail}
      input_checks: { evaluators: [{ plugin: regex, must_not_match: ["forbidden"] }], on_fail: ${onFail} }
`;

// Row 0: both answers leak → the answer gate refuses after two paid calls. Row 1: the
// prompt is forbidden → the input check refuses before any call. Rows 2–3: clean.
const ROWS: DatasetRow[] = [
  {
    id: 'leak',
    split: 'test',
    prompt: 'What is the code?',
    outcomes: { W: { score: 1, response: 'the secret is 42', cost_usd: 0.001 }, S: { score: 1, response: 'secret: 42', cost_usd: 0.01 } },
  },
  {
    id: 'forbidden',
    split: 'test',
    prompt: 'A forbidden question',
    outcomes: { W: { score: 1, response: 'ok', cost_usd: 0.001 }, S: { score: 1, response: 'ok', cost_usd: 0.01 } },
  },
  ...[2, 3].map((i) => ({
    id: `q${i}`,
    split: 'test' as const,
    prompt: `What is ${i} + ${i}?`,
    outcomes: { W: { score: 1, response: `${2 * i}`, cost_usd: 0.001 }, S: { score: 1, response: `${2 * i}`, cost_usd: 0.01 } },
  })),
];

async function evaluate(onFail: 'serve' | 'refuse') {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-eval-refusal-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'gateway.yaml'), policy(onFail));
  writeFileSync(path.join(dir, 'rows.jsonl'), ROWS.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return runEval({
    config: path.join(dir, 'gateway.yaml'),
    data: path.join(dir, 'rows.jsonl'),
    route: 'qa',
    map: { weak: 'W', strong: 'S' },
    split: 'test',
    sweep: 0,
  });
}

describe('eval counts the rows a gate refuses', () => {
  test('on_fail: refuse → refused rows stay in, with quality 0 and their calls paid', async () => {
    const { report, rows } = await evaluate('refuse');
    assert.equal(report.dataset.evaluated, 4, 'no refused row is left out');
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.deepEqual(
      { refused: byId.get('leak')?.refused, quality: byId.get('leak')?.quality, calls: byId.get('leak')?.calls, cost: byId.get('leak')?.cost },
      { refused: true, quality: 0, calls: ['weak', 'strong'], cost: 0.011 },
    );
    assert.deepEqual(
      {
        refused: byId.get('forbidden')?.refused,
        quality: byId.get('forbidden')?.quality,
        calls: byId.get('forbidden')?.calls,
        cost: byId.get('forbidden')?.cost,
      },
      { refused: true, quality: 0, calls: [], cost: 0 },
    );
    assert.equal(report.metrics.mean_quality, 0.5, 'two of four rows answered, both right');
    assert.ok(report.notes.some((n) => /^2 of 4 rows were refused by the route's gate/.test(n)));
  });

  test('on_fail: serve → the same rows are answered and count as answered', async () => {
    const { report, rows } = await evaluate('serve');
    assert.equal(report.dataset.evaluated, 4);
    assert.ok(rows.every((r) => !r.refused));
    assert.equal(report.metrics.mean_quality, 1);
  });
});
