// Writes docs/eval/frontier.md from the JSON reports docs/eval/make.sh saves: for each data
// set, the deployable configurations (nothing on their path reads a recorded score), the
// baselines and the upper bounds side by side, each with the report and command behind it.
// Run by make.sh after the evaluations; nothing here is typed by hand but the prose.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { EvalReport } from '../src/analysis/eval/runner.ts';

const DIR = path.resolve(import.meta.dirname, '../docs/eval');

interface Entry {
  /** The report's name under docs/eval/json (and its .md beside it). */
  report: string;
  label: string;
  /** The configuration the data set's bar is about: its baselines and bounds head the table. */
  main?: boolean;
}

const DATASETS: Array<{ title: string; bar: string; entries: Entry[] }> = [
  {
    title: 'RouterBench, test split (arc-challenge, winogrande, mbpp; recorded costs)',
    bar: 'bar: ≥ 97 % retention at ≥ 45 % saved against always-GPT-4, above the classifier alone and the agreement gate alone at equal cost; moonshot 98 % at 50 %',
    entries: [
      { report: 'routerbench', label: 'examples/routerbench/gateway.yaml: Yi-34B checked by Llama-2-70B, code to GPT-3.5, GPT-4 on disagreement', main: true },
      { report: 'agreement-routerbench', label: 'agreement gate alone: Mixtral checked by Yi-34B, GPT-4 on disagreement' },
      { report: 'routerbench-learned', label: 'classifier router alone (three tiers, no gate)' },
    ],
  },
  {
    title: 'RouteLLM GSM8K, test split (Mixtral → GPT-4; costs estimated from prices × tokens)',
    bar: 'bar: ≥ 92 % retention at ≥ 55 % saved',
    entries: [
      { report: 'routellm-gsm8k', label: 'examples/routellm/gateway.yaml: classifier prior + learned gate, cascade rule', main: true },
      { report: 'routellm-gsm8k-gate-only', label: 'learned gate alone (threshold 0.5)' },
      { report: 'routellm-gsm8k-classifier', label: 'classifier router alone (examples/learned, route math)' },
      { report: 'bandit-routellm-gsm8k', label: 'bandit router, taught row by row' },
    ],
  },
];

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

function load(name: string): EvalReport {
  return JSON.parse(readFileSync(path.join(DIR, 'json', `${name}.json`), 'utf8')) as EvalReport;
}

/** The best retention of a report's curve at `savings` or more: what it keeps at the main configuration's cost. */
function atEqualCost(report: EvalReport, savings: number): string {
  const points = [report.metrics, ...report.sweep].filter((p) => p.cost_savings >= savings - 1e-9);
  if (points.length === 0) return 'never saves that much';
  const best = points.reduce((a, b) => (b.quality_retention > a.quality_retention ? b : a));
  return `${pct(best.quality_retention)} (at ${pct(best.cost_savings)} saved)`;
}

const out: string[] = [
  '# The deployable frontier',
  '',
  'Made by `sh docs/eval/make.sh` (this page by `scripts/eval-frontier.ts` from the JSON reports in `json/`).',
  'Every number is on a **test split**; the models and every chosen setting were fitted or',
  "picked on the train split only. *Deployable* means nothing on the policy's path reads a",
  'recorded score or a reference answer: the gates judge the recorded answer texts, as they',
  'would judge live answers. The baselines and the two upper bounds read the recorded scores',
  'and are labelled so; no deployment can reach an upper bound.',
  '',
];

for (const dataset of DATASETS) {
  const main = dataset.entries.find((e) => e.main)!;
  const ours = load(main.report);
  const saved = ours.metrics.cost_savings;
  out.push(`## ${dataset.title}`, '', `${dataset.bar}.`, '');
  out.push("| configuration | reads a recorded score | rows | cost saved | quality retention | retention at ≥ the main row's savings | report |");
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const entry of dataset.entries) {
    const r = entry.report === main.report ? ours : load(entry.report);
    out.push(
      `| ${entry.main ? `**${entry.label}**` : entry.label} | no | ${r.dataset.evaluated} | ${pct(r.metrics.cost_savings)} | ${pct(r.metrics.quality_retention)} | ${entry.main ? '—' : atEqualCost(r, saved)} | [${entry.report}.md](${entry.report}.md) |`,
    );
  }
  const b = ours.baselines;
  const rows: Array<[string, { cost_savings: number; quality_retention: number } | null]> = [
    ['always-cheapest (baseline)', b.always_cheapest],
    ['always-best (baseline)', b.always_best],
    ['random at equal cost: the best mix of fixed tiers (baseline, the hull)', b.random_equal_cost],
    ['perfect judge: the same route gated on recorded scores (upper bound)', b.perfect_judge],
    ['oracle: each row to its oracle tier (upper bound)', b.oracle],
  ];
  for (const [label, m] of rows)
    if (m)
      out.push(
        `| ${label} | yes | ${ours.dataset.evaluated} | ${pct(m.cost_savings)} | ${pct(m.quality_retention)} | | [${main.report}.md](${main.report}.md) |`,
      );
  out.push('');
  const gate = ours.gate_accuracy;
  if (gate && gate.gated > 0)
    out.push(
      `Gate of the main configuration on its first answers: of the ${gate.tp + gate.fp} it passed, ${gate.tp} were good; of the ${gate.fp + gate.tn} bad ones it failed ${gate.tn} (${pct(gate.tn / Math.max(1, gate.fp + gate.tn))}); it failed ${gate.fn} of the ${gate.tp + gate.fn} good ones.`,
      '',
    );
}

out.push(
  '## Commands',
  '',
  'Each report starts with the exact command that made it; `make.sh` holds them all, training included:',
  '',
  '```sh',
  'sh docs/eval/make.sh',
  '```',
  '',
);
writeFileSync(path.join(DIR, 'frontier.md'), out.join('\n'));
process.stderr.write(`wrote ${path.join(DIR, 'frontier.md')}\n`);
