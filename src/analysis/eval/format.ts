// How an eval report is shown: a terminal table, Markdown, and the cost–quality chart.
// The numbers come from the report as they are; this file only lays them out.
import Table from 'cli-table3';
import { costQualitySvg } from '../chart.ts';
import type { BaselineName, CurvePoint, PolicyMetrics } from '../metrics.ts';
import { PERFECT_JUDGE, type CurveMetrics, type EvalReport } from './runner.ts';

// Every column that reads recorded scores to decide (the perfect judge, the oracle) says
// it is an upper bound in its title, so no table can be read as a deployable result.
type Column = 'policy' | BaselineName | 'perfect_judge';
const RANDOM_TITLE = 'random at equal cost (best tier mix)';
const ORACLE_TITLE = 'oracle (upper bound)';

function columns(report: EvalReport): Array<{ key: Column; title: string }> {
  const out: Array<{ key: Column; title: string }> = [
    { key: 'policy', title: report.gate.mode === 'recorded' ? `policy with the ${PERFECT_JUDGE}` : 'policy' },
    { key: 'always_cheapest', title: 'always-cheapest' },
    { key: 'always_best', title: 'always-best' },
    { key: 'random_equal_cost', title: RANDOM_TITLE },
  ];
  // In recorded mode the policy column already is the perfect judge.
  if (report.baselines.perfect_judge && report.gate.mode !== 'recorded') out.push({ key: 'perfect_judge', title: PERFECT_JUDGE });
  out.push({ key: 'oracle', title: ORACLE_TITLE });
  return out;
}

const TARGETED = ['routing_accuracy', 'cost_savings', 'quality_retention', 'escalation_rate'] as const;
type Targeted = (typeof TARGETED)[number];
const LABELS: Record<Targeted, string> = {
  routing_accuracy: 'routing accuracy',
  cost_savings: 'cost savings',
  quality_retention: 'quality retention',
  escalation_rate: 'escalation rate',
};

export function percent(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : `${(x * 100).toFixed(digits)} %`;
}

function number(x: number | null | undefined, digits = 3): string {
  return x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits);
}

export function usd(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const abs = Math.abs(x);
  return `$${abs >= 100 ? x.toFixed(0) : abs >= 1 ? x.toFixed(2) : abs >= 0.01 ? x.toFixed(4) : x.toPrecision(3)}`;
}

function target(report: EvalReport, key: Targeted): string {
  return `${key === 'escalation_rate' ? '<' : '>'} ${percent(report.targets[key], 0)}`;
}

interface Grid {
  header: string[];
  rows: string[][];
}

/** The comparison of the policy with the baselines, as rows of cells. */
export function comparisonGrid(report: EvalReport, marks: { pass: string; fail: string } = { pass: '✓', fail: '✗' }): Grid {
  const COLUMNS = columns(report);
  const metricsOf = (c: Column): PolicyMetrics => (c === 'policy' ? report.metrics : (report.baselines[c] as PolicyMetrics));
  const curveOf = (c: Column): CurveMetrics => report.curve_metrics[c];
  // Where the ladder is not monotone these are refused, not printed (DESIGN §5).
  const gapCell = (c: Column, value: (m: CurveMetrics) => string) =>
    report.curve_metrics_refused !== null && c !== 'always_cheapest' && c !== 'always_best' ? 'refused †' : value(curveOf(c));
  const estimated = report.costs.estimated ? ' (est.)' : '';
  const rows: string[][] = [];
  for (const key of TARGETED) {
    rows.push([
      LABELS[key],
      target(report, key),
      ...COLUMNS.map(({ key: c }) => percent(metricsOf(c)[key]) + (c === 'policy' ? ` ${report.metrics.meets[key] ? marks.pass : marks.fail}` : '')),
    ]);
  }
  rows.push(['strong-call share', '', ...COLUMNS.map(({ key: c }) => percent(metricsOf(c).strong_call_share))]);
  rows.push(['mean quality', '', ...COLUMNS.map(({ key: c }) => number(metricsOf(c).mean_quality))]);
  rows.push([`total cost${estimated}`, '', ...COLUMNS.map(({ key: c }) => usd(metricsOf(c).total_cost))]);
  rows.push(['gap closed (PGR)', '', ...COLUMNS.map(({ key: c }) => gapCell(c, (m) => number(m.pgr)))]);
  rows.push(['APGR', '', ...COLUMNS.map(({ key: c }) => gapCell(c, (m) => number(m.apgr)))]);
  rows.push(['CPT(50 %)', '', ...COLUMNS.map(({ key: c }) => gapCell(c, (m) => percent(m.cpt50)))]);
  rows.push(['CPT(80 %)', '', ...COLUMNS.map(({ key: c }) => gapCell(c, (m) => percent(m.cpt80)))]);
  rows.push(['AIQ', '', ...COLUMNS.map(({ key: c }) => number(curveOf(c).aiq))]);
  return { header: ['', 'target', ...COLUMNS.map((c) => c.title)], rows };
}

function sweepGrid(report: EvalReport): Grid {
  return {
    header: [
      `${report.sweep_of ?? 'gate'} threshold`,
      'strong-call share',
      'mean quality',
      'total cost',
      'escalation rate',
      'cost savings',
      'quality retention',
      'random at equal cost',
    ],
    rows: report.sweep.map((p) => [
      p.threshold.toFixed(2),
      percent(p.strong_share),
      number(p.quality),
      usd(p.cost),
      percent(p.escalation_rate),
      percent(p.cost_savings),
      percent(p.quality_retention),
      percent(p.equal_cost_retention),
    ]),
  };
}

/** The lines around the table: what was evaluated, how, and what to keep in mind. */
export function contextLines(report: EvalReport): string[] {
  const d = report.dataset;
  const lines: string[] = [];
  lines.push(
    `route ${report.policy.route} of ${report.policy.file} (policy ${report.policy.version}; router ${report.policy.router}${report.policy.threshold !== null ? `; gate ${report.policy.gate_evaluators.join(', ')} ≥ ${report.policy.threshold.toFixed(2)}, up to ${report.policy.max_escalations} escalation${report.policy.max_escalations === 1 ? '' : 's'}` : '; no gate'})`,
  );
  lines.push(
    `dataset ${d.file}: ${d.evaluated} rows evaluated of ${d.selected} selected (${d.rows} in the file; split ${d.split}${d.where ? `; where ${d.where}` : ''}${d.limit !== null ? `; limit ${d.limit}` : ''})`,
  );
  for (const s of d.skipped) lines.push(`  skipped ${s.rows} × ${s.reason} (e.g. ${s.examples.join(', ')})`);
  lines.push(`tiers: ${report.tiers.map((t) => `${t.name} = ${t.model} → ${t.dataset_model}`).join('; ')}`);
  lines.push(
    `quality target ${report.quality_target}: a tier's answer is good enough when its recorded score reaches it (oracle tier, routing accuracy, gate precision/recall)`,
  );
  if (report.gate.mode === 'none') lines.push('gate: none on this route');
  else if (report.gate.mode === 'recorded')
    lines.push(
      `gate: recorded — the ${PERFECT_JUDGE}: recorded scores stand in for the route's evaluators on all ${report.gate.recorded_rows} rows; not deployable`,
    );
  else
    lines.push(
      `gate: real — the route's evaluators on the recorded answer texts of ${report.gate.real_rows} rows; no recorded score read on the policy's path${report.gate.unjudgeable_rows > 0 ? `; ${report.gate.unjudgeable_rows} rows without answer texts left out` : ''}`,
    );
  lines.push(report.costs.estimated ? 'costs: estimated from policy prices × tokens where the dataset records no cost' : 'costs: as recorded in the dataset');
  return lines;
}

function gateLine(report: EvalReport): string | null {
  const g = report.gate_accuracy;
  if (!g) return null;
  const whose = report.gate.mode === 'recorded' ? `the ${PERFECT_JUDGE}` : "the route's evaluators";
  return `gate precision ${percent(g.precision)}, recall ${percent(g.recall)} of ${whose} against recorded scores ≥ ${report.quality_target} (first answers: ${g.tp} passed and good, ${g.fp} passed but not good, ${g.fn} failed but good, ${g.tn} failed and not good)`;
}

/** The policy's regret against the best fixed tier in hindsight, and whether its router learned. */
function regretLine(report: EvalReport): string | null {
  const r = report.regret;
  if (!r) return null;
  const curve = r.curve.length > 1 ? `; cumulative after ${r.curve.map((c) => `${c.rows}: ${c.regret.toFixed(1)}`).join(', ')}` : '';
  const learned = r.learned ? ` — the router learned from ${r.outcomes_taught} outcomes as it went` : '';
  return `regret against the best fixed tier (${r.best_fixed_tier}; reward = recorded quality − ${r.lambda}·cost_usd·1000): ${r.total.toFixed(2)} over ${report.dataset.evaluated} rows in replay order (${r.per_row.toFixed(4)} per row)${learned}${curve}`;
}

/** The line under the table that says why gap closed, APGR and CPT are refused. */
function refusedLine(report: EvalReport): string | null {
  return report.curve_metrics_refused === null ? null : `† ${report.curve_metrics_refused}`;
}

function sweepTitle(report: EvalReport): string {
  if (report.sweep_moves === false)
    return `threshold sweep — it does not move: all ${report.sweep.length} thresholds give the same point, so there is no curve:`;
  return 'threshold sweep (the cost–quality curve):';
}

function tableOf(grid: Grid): string {
  // No colours (the output is often piped or captured) and no rules between body rows.
  const table = new Table({ head: grid.header, style: { head: [], border: [] }, chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } });
  table.push(...grid.rows);
  return table.toString();
}

/** The report for a terminal. */
export function terminalReport(report: EvalReport): string {
  const out = [...contextLines(report), '', tableOf(comparisonGrid(report))];
  const refused = refusedLine(report);
  if (refused) out.push(refused);
  const gate = gateLine(report);
  if (gate) out.push(gate);
  const regret = regretLine(report);
  if (regret) out.push(regret);
  if (report.sweep.length > 0) out.push('', sweepTitle(report), tableOf(sweepGrid(report)));
  if (report.notes.length > 0) out.push('', ...report.notes.map((n) => `note: ${n}`));
  out.push(
    '',
    `${report.dataset.evaluated} rows × ${1 + report.sweep.length} runs in ${((report.timing.run_ms + report.timing.sweep_ms) / 1000).toFixed(1)} s (${report.timing.rows_per_second} rows/s)`,
  );
  return out.join('\n') + '\n';
}

function markdownTable(grid: Grid): string {
  const escape = (cell: string) => cell.replace(/\|/g, '\\|');
  const lines = [`| ${grid.header.map(escape).join(' | ')} |`, `|${grid.header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of grid.rows) lines.push(`| ${row.map(escape).join(' | ')} |`);
  return lines.join('\n');
}

/** The report as Markdown (a heading, the command when given, the context, the tables and the notes). */
export function markdownReport(report: EvalReport, chartFile?: string, command?: string): string {
  // The command that made the report, so a committed report can be made again.
  const made = command ? ['```sh', command, '```', ''] : [];
  const out = [
    `# tiergate eval: route \`${report.policy.route}\``,
    '',
    ...made,
    ...contextLines(report).map((l) => (l.startsWith('  ') ? `  - ${l.trim()}` : `- ${l}`)),
    '',
    markdownTable(comparisonGrid(report)),
  ];
  const refused = refusedLine(report);
  if (refused) out.push('', refused);
  const gate = gateLine(report);
  if (gate) out.push('', gate);
  const regret = regretLine(report);
  if (regret) out.push('', regret);
  if (report.sweep.length > 0)
    out.push(
      '',
      '## Threshold sweep',
      '',
      ...(report.sweep_moves === false ? [sweepTitle(report).replace(/:$/, '.'), ''] : []),
      markdownTable(sweepGrid(report)),
    );
  if (chartFile) out.push('', `![cost–quality curve](${chartFile})`);
  if (report.notes.length > 0) out.push('', '## Notes', '', ...report.notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

/**
 * The cost–quality chart: the policy's curve (its sweep), the tiers' hull (random at
 * equal cost: what mixing fixed tiers reaches at each cost), the perfect-judge point and
 * the oracle point — the same oracle as the table's — and the two fixed baselines.
 */
export function chartSvg(report: EvalReport): Promise<string> {
  const point = (b: PolicyMetrics & CurvePoint, label: string): CurvePoint => ({ label, strong_share: b.strong_share, cost: b.cost, quality: b.quality });
  const policyName = `${report.gate.mode === 'recorded' ? `policy with the ${PERFECT_JUDGE}` : 'policy'}${report.sweep.length > 0 ? (report.sweep_moves === false ? ' (sweep does not move)' : ' (sweep)') : ''}`;
  return costQualitySvg(
    [
      { name: policyName, points: report.curves.policy },
      { name: 'random at equal cost (tier hull)', points: report.curves.hull },
      ...(report.curves.perfect_judge.length > 0 && report.gate.mode !== 'recorded' ? [{ name: PERFECT_JUDGE, points: report.curves.perfect_judge }] : []),
      { name: ORACLE_TITLE, points: report.curves.oracle },
      { name: 'always-cheapest', points: [point(report.baselines.always_cheapest, 'always-cheapest')] },
      { name: 'always-best', points: [point(report.baselines.always_best, 'always-best')] },
    ],
    { title: `tiergate eval: route ${report.policy.route} on ${report.dataset.evaluated} rows${report.costs.estimated ? ' (costs estimated)' : ''}` },
  );
}
