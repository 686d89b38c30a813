// How an eval report is shown: a terminal table, Markdown, and the cost–quality chart.
// The numbers come from the report as they are; this file only lays them out.
import Table from 'cli-table3';
import { costQualitySvg } from '../chart.ts';
import type { BaselineName, CurvePoint, PolicyMetrics } from '../metrics.ts';
import type { CurveMetrics, EvalReport } from './runner.ts';

type Column = 'policy' | BaselineName;
const COLUMNS: ReadonlyArray<{ key: Column; title: string }> = [
  { key: 'policy', title: 'policy' },
  { key: 'always_cheapest', title: 'always-cheapest' },
  { key: 'always_best', title: 'always-best' },
  { key: 'random_equal_cost', title: 'random (equal cost)' },
  { key: 'oracle', title: 'oracle' },
];

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
  const metricsOf = (c: Column): PolicyMetrics => (c === 'policy' ? report.metrics : report.baselines[c]);
  const curveOf = (c: Column): CurveMetrics => report.curve_metrics[c];
  const estimated = report.costs.estimated ? ' (est.)' : '';
  const rows: string[][] = [];
  for (const key of TARGETED) {
    rows.push([LABELS[key], target(report, key), ...COLUMNS.map(({ key: c }) => percent(metricsOf(c)[key]) + (c === 'policy' ? ` ${report.metrics.meets[key] ? marks.pass : marks.fail}` : ''))]);
  }
  rows.push(['strong-call share', '', ...COLUMNS.map(({ key: c }) => percent(metricsOf(c).strong_call_share))]);
  rows.push(['mean quality', '', ...COLUMNS.map(({ key: c }) => number(metricsOf(c).mean_quality))]);
  rows.push([`total cost${estimated}`, '', ...COLUMNS.map(({ key: c }) => usd(metricsOf(c).total_cost))]);
  rows.push(['APGR', '', ...COLUMNS.map(({ key: c }) => number(curveOf(c).apgr))]);
  rows.push(['CPT(50 %)', '', ...COLUMNS.map(({ key: c }) => percent(curveOf(c).cpt50))]);
  rows.push(['CPT(80 %)', '', ...COLUMNS.map(({ key: c }) => percent(curveOf(c).cpt80))]);
  rows.push(['AIQ', '', ...COLUMNS.map(({ key: c }) => number(curveOf(c).aiq))]);
  return { header: ['', 'target', ...COLUMNS.map((c) => c.title)], rows };
}

function sweepGrid(report: EvalReport): Grid {
  return {
    header: [`${report.sweep_of ?? 'gate'} threshold`, 'strong-call share', 'mean quality', 'total cost', 'escalation rate', 'cost savings', 'quality retention'],
    rows: report.sweep.map((p) => [p.threshold.toFixed(2), percent(p.strong_share), number(p.quality), usd(p.cost), percent(p.escalation_rate), percent(p.cost_savings), percent(p.quality_retention)]),
  };
}

/** The lines around the table: what was evaluated, how, and what to keep in mind. */
export function contextLines(report: EvalReport): string[] {
  const d = report.dataset;
  const lines: string[] = [];
  lines.push(`route ${report.policy.route} of ${report.policy.file} (policy ${report.policy.version}; router ${report.policy.router}${report.policy.threshold !== null ? `; gate ${report.policy.gate_evaluators.join(', ')} ≥ ${report.policy.threshold.toFixed(2)}, up to ${report.policy.max_escalations} escalation${report.policy.max_escalations === 1 ? '' : 's'}` : '; no gate'})`);
  lines.push(`dataset ${d.file}: ${d.evaluated} rows evaluated of ${d.selected} selected (${d.rows} in the file; split ${d.split}${d.where ? `; where ${d.where}` : ''}${d.limit !== null ? `; limit ${d.limit}` : ''})`);
  for (const s of d.skipped) lines.push(`  skipped ${s.rows} × ${s.reason} (e.g. ${s.examples.join(', ')})`);
  lines.push(`tiers: ${report.tiers.map((t) => `${t.name} = ${t.model} → ${t.dataset_model}`).join('; ')}`);
  lines.push(`quality target ${report.quality_target}: a tier's answer is good enough when its recorded score reaches it (oracle tier, routing accuracy, gate precision/recall)`);
  if (report.gate.mode === 'none') lines.push('gate: none on this route');
  else if (report.gate.real_rows > 0 && report.gate.recorded_rows > 0) lines.push(`gate: ${report.gate.mode} — real evaluators on ${report.gate.real_rows} rows with answer texts, recorded scores on ${report.gate.recorded_rows} rows`);
  else lines.push(`gate: ${report.gate.mode} — ${report.gate.recorded_rows > 0 ? 'recorded scores' : 'real evaluators on the recorded answer texts'}`);
  lines.push(report.costs.estimated ? 'costs: estimated from policy prices × tokens where the dataset records no cost' : 'costs: as recorded in the dataset');
  return lines;
}

function gateLine(report: EvalReport): string | null {
  const g = report.gate_accuracy;
  if (!g) return null;
  return `gate precision ${percent(g.precision)}, recall ${percent(g.recall)} against recorded scores ≥ ${report.quality_target} (first answers: ${g.tp} passed and good, ${g.fp} passed but not good, ${g.fn} failed but good, ${g.tn} failed and not good)`;
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
  const gate = gateLine(report);
  if (gate) out.push(gate);
  if (report.sweep.length > 0) out.push('', 'threshold sweep (the cost–quality curve):', tableOf(sweepGrid(report)));
  if (report.notes.length > 0) out.push('', ...report.notes.map((n) => `note: ${n}`));
  out.push('', `${report.dataset.evaluated} rows × ${1 + report.sweep.length} runs in ${((report.timing.run_ms + report.timing.sweep_ms) / 1000).toFixed(1)} s (${report.timing.rows_per_second} rows/s)`);
  return out.join('\n') + '\n';
}

function markdownTable(grid: Grid): string {
  const escape = (cell: string) => cell.replace(/\|/g, '\\|');
  const lines = [`| ${grid.header.map(escape).join(' | ')} |`, `|${grid.header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of grid.rows) lines.push(`| ${row.map(escape).join(' | ')} |`);
  return lines.join('\n');
}

/** The report as Markdown (a heading, the context, the tables and the notes). */
export function markdownReport(report: EvalReport, chartFile?: string): string {
  const out = [`# tiergate eval: route \`${report.policy.route}\``, '', ...contextLines(report).map((l) => (l.startsWith('  ') ? `  - ${l.trim()}` : `- ${l}`)), '', markdownTable(comparisonGrid(report))];
  const gate = gateLine(report);
  if (gate) out.push('', gate);
  if (report.sweep.length > 0) out.push('', '## Threshold sweep', '', markdownTable(sweepGrid(report)));
  if (chartFile) out.push('', `![cost–quality curve](${chartFile})`);
  if (report.notes.length > 0) out.push('', '## Notes', '', ...report.notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

/** The cost–quality chart: the policy's threshold curve, the random and oracle curves, and the fixed baselines. */
export function chartSvg(report: EvalReport): Promise<string> {
  const point = (b: PolicyMetrics & CurvePoint, label: string): CurvePoint => ({ label, strong_share: b.strong_share, cost: b.cost, quality: b.quality });
  return costQualitySvg(
    [
      { name: report.sweep.length > 0 ? 'policy (sweep)' : 'policy', points: report.curves.policy },
      { name: 'random', points: report.curves.random },
      { name: 'oracle', points: report.curves.oracle },
      { name: 'always-cheapest', points: [point(report.baselines.always_cheapest, 'always-cheapest')] },
      { name: 'always-best', points: [point(report.baselines.always_best, 'always-best')] },
    ],
    { title: `tiergate eval: route ${report.policy.route} on ${report.dataset.evaluated} rows${report.costs.estimated ? ' (costs estimated)' : ''}` },
  );
}
