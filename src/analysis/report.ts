// `tiergate report`: the routing metrics of DESIGN §5, measured on production traffic
// from decision logs (and client feedback), grouped by route, model, tier or time window.
//
// What production knows, and so what each number means here:
// - cost savings     = 1 − Σ cost_usd / Σ best_cost_usd over requests that got an answer
//                      (best_cost_usd: the route's always-best model at the served
//                      answer's token counts; cost_usd includes every attempt and judge).
// - escalation rate  = share of answered requests that went up a tier after an answer
//                      failed the gate (was_escalated, and an attempt's gate failed; a
//                      climb past a tier that was down is not an escalation).
// - served quality   = mean quality_score (the gate score of the served answer).
// - quality retention: from shadow lines (routes with `shadow: { sample }`), over the
//                      shadowed requests whose two scores are known:
//                      mean served_quality / mean best_quality, with the sample count.
//                      Requests the best model served are never shadowed (they retain
//                      100 % by definition), so this is retention where it can differ.
// - routing accuracy (estimate): only requests first routed BELOW their route's top tier
//                      can be judged online (nobody calls a cheaper model behind a
//                      top-tier routing). Of those, a request whose first routed answer
//                      failed the gate was routed too low: wrong, known for every request.
//                      One whose first answer passed is right when, in its shadow line,
//                      served_quality ≥ best_quality − ε; the share right among shadowed
//                      ones is extrapolated to all that passed:
//                        accuracy = (passed × right/shadowed) / (passed + failed_first)
//                      n/a without a judgeable request, or with passes but no shadow data.
// - strong-call share = share of answered requests served by their route's top tier.
// - latency p50/p95  = quantiles (linear interpolation, as in `tiergate eval`) of the
//                      latency_ms of answered requests.
// - feedback         = mean client score (0..1) of the group's requests that have one
//                      (several scores for one request are averaged first).
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import Table from 'cli-table3';
import { DEFAULT_DECISION_LOG } from '../policy-shape/defaults.ts';
import type { DecisionRecord, ShadowRecord } from '../observe/decision-log.ts';
import { TARGETS as TARGET_VALUES, quantile } from './metrics.ts';

export type GroupBy = 'route' | 'model' | 'tier' | 'window';
export const GROUP_BY: readonly GroupBy[] = ['route', 'model', 'tier', 'window'];

/** The seed's targets for a routing policy (DESIGN §5), the values shared with `tiergate eval`. */
export const TARGETS = {
  routing_accuracy: { op: '>', value: TARGET_VALUES.routing_accuracy, label: 'routing accuracy' },
  cost_savings: { op: '>', value: TARGET_VALUES.cost_savings, label: 'cost savings' },
  quality_retention: { op: '>', value: TARGET_VALUES.quality_retention, label: 'quality retention' },
  escalation_rate: { op: '<', value: TARGET_VALUES.escalation_rate, label: 'escalation rate' },
} as const;
export type Headline = keyof typeof TARGETS;
const HEADLINES: readonly Headline[] = ['cost_savings', 'escalation_rate', 'quality_retention', 'routing_accuracy'];

export const DEFAULT_EPSILON = 0.02;

export interface BadLine {
  file: string;
  line: number;
  reason: string;
}

export interface LogInput {
  files: string[];
  lines: number;
  decisions: DecisionRecord[];
  shadows: ShadowRecord[];
  /** Every bad line is counted; the first ones are kept to show where. */
  badLines: number;
  badSamples: BadLine[];
}

export interface FeedbackInput {
  file: string;
  entries: number;
  /** request_id → the scores given to it. */
  scores: Map<string, number[]>;
  badLines: number;
  badSamples: BadLine[];
}

/** What the policy file adds: the ladder's order, for sorting and for tiers the lines do not name. */
export interface PolicyHints {
  tiers: Array<{ name: string; models: string[] }>;
}

export interface ReportOptions {
  by: GroupBy;
  /** Window length for --by window, in ms. */
  windowMs: number;
  windowLabel: string;
  since?: Date;
  until?: Date;
  epsilon: number;
  policy?: PolicyHints | null;
}

export interface GroupMetrics {
  key: string;
  requests: number;
  answered: number;
  errors: number;
  client_closed: number;
  /** Everything spent on the group's requests (failed ones included). */
  cost_usd: number;
  /** Always-best cost of the answered requests. */
  best_cost_usd: number;
  cost_savings: number | null;
  escalated: number;
  escalation_rate: number | null;
  served_quality: { mean: number | null; n: number };
  quality_retention: { value: number | null; n: number; served_mean: number | null; best_mean: number | null };
  routing_accuracy: {
    value: number | null;
    /** Judgeable: first routed below the top tier, and the routed tier answered. */
    judged: number;
    /** First routed answer failed the gate: routed too low. */
    failed_first: number;
    /** First routed answer passed the gate. */
    passed_first: number;
    /** Of those, shadowed with both scores known, and right among them. */
    shadowed: number;
    right: number;
    /** Routed to the top tier: not judgeable online. */
    top_routed: number;
  };
  strong_call_share: number | null;
  latency_ms: { p50: number | null; p95: number | null };
  feedback: { mean: number | null; n: number };
  shadow: { lines: number; errors: number; cost_usd: number };
  targets: Record<Headline, { met: boolean | null }>;
}

export interface Report {
  generated_at: string;
  by: GroupBy;
  window: string | null;
  since: string | null;
  until: string | null;
  epsilon: number;
  input: {
    logs: string[];
    lines: number;
    decision_lines: number;
    shadow_lines: number;
    bad_lines: number;
    bad_line_samples: BadLine[];
    /** Decision lines outside --since/--until. */
    outside_window: number;
    /** Shadow lines whose decision line is not in the logs read. */
    orphan_shadow_lines: number;
    first_timestamp: string | null;
    last_timestamp: string | null;
  };
  feedback: { file: string; entries: number; joined_requests: number; bad_lines: number; bad_line_samples: BadLine[] } | null;
  targets: typeof TARGETS;
  groups: GroupMetrics[];
  total: GroupMetrics;
}

// ---------------------------------------------------------------------------------
// Reading

const MAX_SAMPLES = 10;

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const finiteOrNull = (v: unknown) => v === null || (typeof v === 'number' && Number.isFinite(v));

/** Why a parsed line is not a usable decision or shadow line; null when it is. */
function problemOf(value: unknown): string | null {
  if (!isRecord(value)) return 'not a JSON object';
  if (typeof value.request_id !== 'string') return 'no request_id';
  if (typeof value.timestamp !== 'string' || Number.isNaN(Date.parse(value.timestamp))) return 'no valid timestamp';
  if (value.kind === 'shadow') {
    if (typeof value.route !== 'string' || typeof value.served_model !== 'string' || typeof value.best_model !== 'string')
      return 'shadow line without route, served_model or best_model';
    if (!finiteOrNull(value.served_quality) || !finiteOrNull(value.best_quality) || !finiteOrNull(value.shadow_cost_usd))
      return 'shadow line with a non-numeric score or cost';
    return null;
  }
  if (value.kind !== undefined) return `unknown line kind ${JSON.stringify(value.kind)}`;
  if (value.status !== 'ok' && value.status !== 'error' && value.status !== 'client_closed') return 'no valid status';
  if (!finiteOrNull(value.cost_usd ?? null) || !finiteOrNull(value.best_cost_usd ?? null) || !finiteOrNull(value.quality_score ?? null))
    return 'non-numeric cost or quality';
  if (typeof value.latency_ms !== 'number' || !Number.isFinite(value.latency_ms)) return 'no latency_ms';
  if (value.attempts !== undefined && !Array.isArray(value.attempts)) return 'attempts is not a list';
  return null;
}

async function eachLine(file: string, onLine: (text: string, n: number) => void): Promise<void> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const text of lines) onLine(text, ++n);
}

/** Reads decision logs; bad lines are counted and skipped. Rejects only when a file cannot be read. */
export async function readLogs(files: readonly string[]): Promise<LogInput> {
  const input: LogInput = { files: [...files], lines: 0, decisions: [], shadows: [], badLines: 0, badSamples: [] };
  const bad = (file: string, line: number, reason: string) => {
    input.badLines++;
    if (input.badSamples.length < MAX_SAMPLES) input.badSamples.push({ file, line, reason });
  };
  for (const file of files) {
    await eachLine(file, (text, n) => {
      if (text.trim() === '') return;
      input.lines++;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return bad(file, n, 'not JSON');
      }
      // POST /v1/feedback scores (src/pipeline/feedback.ts) share the log; --feedback reads them.
      if (isRecord(value) && value.kind === 'feedback') return;
      const problem = problemOf(value);
      if (problem) return bad(file, n, problem);
      const line = value as Record<string, unknown>;
      if (line.kind === 'shadow') input.shadows.push(line as unknown as ShadowRecord);
      else input.decisions.push({ ...line, attempts: Array.isArray(line.attempts) ? line.attempts : [] } as DecisionRecord);
    });
  }
  return input;
}

/** Reads a JSONL of {request_id, score} (score 0..1). */
export async function readFeedback(file: string): Promise<FeedbackInput> {
  const input: FeedbackInput = { file, entries: 0, scores: new Map(), badLines: 0, badSamples: [] };
  await eachLine(file, (text, n) => {
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    // A decision log holds feedback lines ({"kind":"feedback", request_id, score}) among
    // decision and shadow lines: the others are not feedback, and not bad either.
    if (isRecord(value) && (value.kind === 'shadow' || (value.kind === undefined && typeof value.status === 'string' && value.score === undefined))) return;
    const reason = !isRecord(value)
      ? 'not a JSON object'
      : typeof value.request_id !== 'string'
        ? 'no request_id'
        : typeof value.score !== 'number' || !(value.score >= 0 && value.score <= 1)
          ? 'score is not a number from 0 to 1'
          : null;
    if (reason || !isRecord(value)) {
      input.badLines++;
      if (input.badSamples.length < MAX_SAMPLES) input.badSamples.push({ file, line: n, reason: reason ?? 'not a JSON object' });
      return;
    }
    input.entries++;
    const id = value.request_id as string;
    input.scores.set(id, [...(input.scores.get(id) ?? []), value.score as number]);
  });
  return input;
}

// ---------------------------------------------------------------------------------
// Arguments

const WINDOW_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "15m", "1h", "1d" → milliseconds; null when not a window. */
export function parseWindow(text: string): number | null {
  const match = /^([1-9][0-9]*)([smhd])$/.exec(text.trim());
  return match ? Number(match[1]) * WINDOW_UNITS[match[2]] : null;
}

/** The decision log a policy writes (analytics.decision_log.file, relative to the policy), or null for none. */
export function decisionLogOf(policyFile: string, data: unknown): string | null {
  const analytics = isRecord(data) && isRecord(data.analytics) ? data.analytics : null;
  const log = analytics && isRecord(analytics.decision_log) ? analytics.decision_log : null;
  const file = log && 'file' in log ? log.file : DEFAULT_DECISION_LOG.file;
  return typeof file === 'string' ? path.resolve(path.dirname(path.resolve(policyFile)), file) : null;
}

export function policyHints(data: unknown): PolicyHints | null {
  if (!isRecord(data) || !Array.isArray(data.tiers)) return null;
  const tiers = data.tiers
    .filter((t): t is { name: string; models: string[] } => isRecord(t) && typeof t.name === 'string' && Array.isArray(t.models))
    .map((t) => ({ name: t.name, models: t.models.filter((m) => typeof m === 'string') }));
  return { tiers };
}

// ---------------------------------------------------------------------------------
// Metrics

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const mean = (xs: readonly number[]) => (xs.length ? sum(xs) / xs.length : null);

/** The q-quantile as `tiergate eval` computes it (linear interpolation); null for none. */
function percentile(values: readonly number[], q: number): number | null {
  return values.length === 0 ? null : quantile([...values], q);
}

function met(headline: Headline, value: number | null): boolean | null {
  if (value === null) return null;
  const target = TARGETS[headline];
  return target.op === '>' ? value > target.value : value < target.value;
}

/**
 * Where each model sits on the ladder: as the lines themselves say (what happened, even
 * under an older policy), else as the policy says; the policy also gives the ladder's order.
 */
function tierIndex(
  decisions: readonly DecisionRecord[],
  policy: PolicyHints | null | undefined,
): { tierOf: (model: string | null) => string | null; order: (kind: 'tier' | 'model') => Map<string, number> } {
  const tierOfModel = new Map<string, string>();
  const tierOrder = new Map<string, number>();
  const modelOrder = new Map<string, number>();
  for (const d of decisions) {
    for (const a of d.attempts) if (typeof a?.model === 'string' && typeof a.tier === 'string' && !tierOfModel.has(a.model)) tierOfModel.set(a.model, a.tier);
    if (d.selected_model && d.tier && !tierOfModel.has(d.selected_model)) tierOfModel.set(d.selected_model, d.tier);
    if (d.routed_model && d.routed_tier && !tierOfModel.has(d.routed_model)) tierOfModel.set(d.routed_model, d.routed_tier);
  }
  policy?.tiers.forEach((tier, i) => {
    tierOrder.set(tier.name, i);
    for (const model of tier.models) {
      if (!tierOfModel.has(model)) tierOfModel.set(model, tier.name);
      modelOrder.set(model, modelOrder.size);
    }
  });
  return {
    tierOf: (model) => (model === null ? null : (tierOfModel.get(model) ?? null)),
    order: (kind) => (kind === 'tier' ? tierOrder : modelOrder),
  };
}

function groupKey(d: DecisionRecord, options: ReportOptions): string {
  switch (options.by) {
    case 'route':
      return d.route ?? '(model by name)';
    case 'model':
      return d.selected_model ?? '(none)';
    case 'tier':
      return d.tier ?? '(no tier)';
    case 'window': {
      const start = Math.floor(Date.parse(d.timestamp) / options.windowMs) * options.windowMs;
      return windowLabel(start, options.windowMs);
    }
  }
}

function windowLabel(start: number, windowMs: number): string {
  const iso = new Date(start).toISOString();
  if (windowMs % WINDOW_UNITS.d === 0) return iso.slice(0, 10);
  if (windowMs % WINDOW_UNITS.m === 0) return `${iso.slice(0, 10)} ${iso.slice(11, 16)}Z`;
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}

function metricsOf(
  key: string,
  decisions: readonly DecisionRecord[],
  shadowOf: Map<string, ShadowRecord>,
  feedback: FeedbackInput | null,
  tierOf: (model: string | null) => string | null,
  epsilon: number,
): GroupMetrics {
  const answered = decisions.filter((d) => d.status === 'ok');
  const priced = answered.filter((d) => d.cost_usd !== null && d.best_cost_usd !== null);
  const pricedCost = sum(priced.map((d) => d.cost_usd as number));
  const bestCost = sum(priced.map((d) => d.best_cost_usd as number));
  // DESIGN §5: the request went up because an answer failed the gate (not because a tier was down).
  const escalated = answered.filter((d) => d.was_escalated === true && d.attempts.some((a) => a?.gate?.passed === false)).length;
  const qualities = answered.map((d) => d.quality_score).filter((q): q is number => typeof q === 'number');

  // Shadow lines of this group's requests.
  const shadows = decisions.map((d) => shadowOf.get(d.request_id)).filter((s): s is ShadowRecord => s !== undefined);
  const compared = shadows.filter((s) => s.status !== 'error' && typeof s.served_quality === 'number' && typeof s.best_quality === 'number');
  const servedMean = mean(compared.map((s) => s.served_quality as number));
  const bestMean = mean(compared.map((s) => s.best_quality as number));

  // Routing accuracy: see the header of this file.
  const accuracy = { value: null as number | null, judged: 0, failed_first: 0, passed_first: 0, shadowed: 0, right: 0, top_routed: 0 };
  for (const d of answered) {
    if (d.route === null) continue;
    const top = tierOf(d.best_model);
    const routedTop = d.routed_model !== null && (d.routed_model === d.best_model || (top !== null && d.routed_tier === top));
    if (routedTop) {
      accuracy.top_routed++;
      continue;
    }
    const first = d.attempts.find((a) => a?.role === 'routed' && a.outcome === 'ok');
    if (!first?.gate) continue;
    accuracy.judged++;
    if (!first.gate.passed) {
      accuracy.failed_first++;
      continue;
    }
    accuracy.passed_first++;
    const shadow = shadowOf.get(d.request_id);
    if (shadow && shadow.status !== 'error' && typeof shadow.served_quality === 'number' && typeof shadow.best_quality === 'number') {
      accuracy.shadowed++;
      if (shadow.served_quality >= shadow.best_quality - epsilon) accuracy.right++;
    }
  }
  if (accuracy.judged > 0 && (accuracy.passed_first === 0 || accuracy.shadowed > 0)) {
    const rightShare = accuracy.passed_first === 0 ? 0 : accuracy.right / accuracy.shadowed;
    accuracy.value = (accuracy.passed_first * rightShare) / (accuracy.passed_first + accuracy.failed_first);
  }

  const strong = answered.filter(
    (d) => d.selected_model !== null && (d.selected_model === d.best_model || (d.tier !== null && d.tier === tierOf(d.best_model))),
  ).length;
  const latencies = answered.map((d) => d.latency_ms);
  const feedbackMeans = feedback
    ? decisions
        .map((d) => feedback.scores.get(d.request_id))
        .filter((s): s is number[] => s !== undefined)
        .map((s) => sum(s) / s.length)
    : [];

  const values: Record<Headline, number | null> = {
    cost_savings: bestCost > 0 ? 1 - pricedCost / bestCost : null,
    escalation_rate: answered.length ? escalated / answered.length : null,
    quality_retention: servedMean !== null && bestMean !== null && bestMean > 0 ? servedMean / bestMean : null,
    routing_accuracy: accuracy.value,
  };
  return {
    key,
    requests: decisions.length,
    answered: answered.length,
    errors: decisions.filter((d) => d.status === 'error').length,
    client_closed: decisions.filter((d) => d.status === 'client_closed').length,
    cost_usd: sum(decisions.map((d) => d.cost_usd ?? 0)),
    best_cost_usd: bestCost,
    cost_savings: values.cost_savings,
    escalated,
    escalation_rate: values.escalation_rate,
    served_quality: { mean: mean(qualities), n: qualities.length },
    quality_retention: { value: values.quality_retention, n: compared.length, served_mean: servedMean, best_mean: bestMean },
    routing_accuracy: accuracy,
    strong_call_share: answered.length ? strong / answered.length : null,
    latency_ms: { p50: percentile(latencies, 0.5), p95: percentile(latencies, 0.95) },
    feedback: { mean: mean(feedbackMeans), n: feedbackMeans.length },
    shadow: { lines: shadows.length, errors: shadows.filter((s) => s.status === 'error').length, cost_usd: sum(shadows.map((s) => s.shadow_cost_usd ?? 0)) },
    targets: Object.fromEntries(HEADLINES.map((h) => [h, { met: met(h, values[h]) }])) as GroupMetrics['targets'],
  };
}

export function buildReport(logs: LogInput, feedback: FeedbackInput | null, options: ReportOptions): Report {
  const since = options.since?.getTime() ?? -Infinity;
  const until = options.until?.getTime() ?? Infinity;
  const inWindow = logs.decisions.filter((d) => {
    const t = Date.parse(d.timestamp);
    return t >= since && t < until;
  });
  const requestIds = new Set(logs.decisions.map((d) => d.request_id));
  // A request has one shadow line; should a log hold two (files given twice), the last wins.
  const shadowOf = new Map<string, ShadowRecord>();
  for (const s of logs.shadows) shadowOf.set(s.request_id, s);
  const { tierOf, order } = tierIndex(logs.decisions, options.policy);

  const groups = new Map<string, DecisionRecord[]>();
  const starts = new Map<string, number>();
  for (const d of inWindow) {
    const key = groupKey(d, options);
    groups.set(key, [...(groups.get(key) ?? []), d]);
    if (options.by === 'window') starts.set(key, Math.floor(Date.parse(d.timestamp) / options.windowMs) * options.windowMs);
  }
  const rank = options.by === 'tier' || options.by === 'model' ? order(options.by) : new Map<string, number>();
  const keys = [...groups.keys()].sort((a, b) => {
    if (options.by === 'window') return (starts.get(a) as number) - (starts.get(b) as number);
    const ra = rank.get(a) ?? Infinity;
    const rb = rank.get(b) ?? Infinity;
    return ra !== rb ? ra - rb : a.localeCompare(b);
  });
  const times = inWindow.map((d) => Date.parse(d.timestamp));
  const joined = feedback ? inWindow.filter((d) => feedback.scores.has(d.request_id)).length : 0;
  return {
    generated_at: new Date().toISOString(),
    by: options.by,
    window: options.by === 'window' ? options.windowLabel : null,
    since: options.since?.toISOString() ?? null,
    until: options.until?.toISOString() ?? null,
    epsilon: options.epsilon,
    input: {
      logs: logs.files,
      lines: logs.lines,
      decision_lines: logs.decisions.length,
      shadow_lines: logs.shadows.length,
      bad_lines: logs.badLines,
      bad_line_samples: logs.badSamples,
      outside_window: logs.decisions.length - inWindow.length,
      orphan_shadow_lines: logs.shadows.filter((s) => !requestIds.has(s.request_id)).length,
      first_timestamp: times.length ? new Date(Math.min(...times)).toISOString() : null,
      last_timestamp: times.length ? new Date(Math.max(...times)).toISOString() : null,
    },
    feedback: feedback
      ? { file: feedback.file, entries: feedback.entries, joined_requests: joined, bad_lines: feedback.badLines, bad_line_samples: feedback.badSamples }
      : null,
    targets: TARGETS,
    groups: keys.map((key) => metricsOf(key, groups.get(key) as DecisionRecord[], shadowOf, feedback, tierOf, options.epsilon)),
    total: metricsOf('all', inWindow, shadowOf, feedback, tierOf, options.epsilon),
  };
}

// ---------------------------------------------------------------------------------
// Rendering

const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)} %`);

export function usd(v: number): string {
  if (v === 0) return '$0';
  if (Math.abs(v) >= 1) return `$${v.toFixed(2)}`;
  if (Math.abs(v) >= 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toPrecision(3)}`;
}

const ms = (v: number | null) => (v === null ? 'n/a' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const score = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
const mark = (m: boolean | null) => (m === null ? '' : m ? ' ✓' : ' ✗');
const targetText = (h: Headline) => `${TARGETS[h].op} ${TARGETS[h].value * 100} %`;

/** A headline metric's value. */
export function headlineValue(g: GroupMetrics, h: Headline): number | null {
  if (h === 'quality_retention') return g.quality_retention.value;
  if (h === 'routing_accuracy') return g.routing_accuracy.value;
  return g[h];
}

function headlineCell(g: GroupMetrics, h: Headline): string {
  // Retention and accuracy are sample estimates: say how many requests they rest on.
  const n = h === 'quality_retention' ? ` (n=${g.quality_retention.n})` : h === 'routing_accuracy' ? ` (n=${g.routing_accuracy.judged})` : '';
  return `${pct(headlineValue(g, h))}${mark(g.targets[h].met)}${n}`;
}

interface Columns {
  headline: { head: string[]; rows: string[][] };
  detail: { head: string[]; rows: string[][] };
}

/** Headers break at "\n" in the terminal (narrower columns) and at a space in Markdown. */
function columns(report: Report): Columns {
  const all = [...report.groups, report.total];
  const by = report.by === 'window' ? `window (${report.window})` : report.by;
  return {
    headline: {
      head: [by, 'requests', ...HEADLINES.map((h) => `${TARGETS[h].label}\n(target ${targetText(h)})`)],
      rows: all.map((g) => [g.key, String(g.requests), ...HEADLINES.map((h) => headlineCell(g, h))]),
    },
    detail: {
      head: [
        by,
        'errors',
        'cost',
        'always-best\ncost',
        'served\nquality',
        'strong-call\nshare',
        'latency\np50 ms',
        'latency\np95 ms',
        'feedback',
        'shadowed\n(cost)',
      ],
      rows: all.map((g) => [
        g.key,
        String(g.errors) + (g.client_closed ? ` (+${g.client_closed} closed)` : ''),
        usd(g.cost_usd),
        usd(g.best_cost_usd),
        `${score(g.served_quality.mean)}${g.served_quality.n ? ` (n=${g.served_quality.n})` : ''}`,
        pct(g.strong_call_share),
        ms(g.latency_ms.p50),
        ms(g.latency_ms.p95),
        g.feedback.n ? `${score(g.feedback.mean)} (n=${g.feedback.n})` : 'n/a',
        g.shadow.lines ? `${g.shadow.lines}${g.shadow.errors ? `, ${g.shadow.errors} failed` : ''} (${usd(g.shadow.cost_usd)})` : '0',
      ]),
    },
  };
}

function summaryLines(report: Report): string[] {
  const i = report.input;
  const lines = [
    `tiergate report: ${i.decision_lines - i.outside_window} requests by ${report.by === 'window' ? `window of ${report.window}` : report.by}` +
      (i.first_timestamp ? `, ${i.first_timestamp} → ${i.last_timestamp}` : '') +
      ` (${i.logs.length} log${i.logs.length === 1 ? '' : 's'}: ${i.decision_lines} decision lines, ${i.shadow_lines} shadow lines, ${i.bad_lines} bad line${i.bad_lines === 1 ? '' : 's'})`,
  ];
  if (report.since || report.until) lines.push(`time range: ${report.since ?? '…'} → ${report.until ?? '…'} (${i.outside_window} requests outside it)`);
  return lines;
}

function noteLines(report: Report): string[] {
  const i = report.input;
  const notes: string[] = [];
  if (i.bad_lines)
    notes.push(
      `${i.bad_lines} bad line${i.bad_lines === 1 ? '' : 's'} skipped: ${i.bad_line_samples.map((b) => `${path.basename(b.file)}:${b.line} ${b.reason}`).join('; ')}${i.bad_lines > i.bad_line_samples.length ? '; …' : ''}`,
    );
  if (i.orphan_shadow_lines)
    notes.push(`${i.orphan_shadow_lines} shadow line${i.orphan_shadow_lines === 1 ? '' : 's'} without a decision line in these logs (not counted)`);
  const f = report.feedback;
  if (f)
    notes.push(
      `feedback ${path.basename(f.file)}: ${f.entries} score${f.entries === 1 ? '' : 's'}, ${f.joined_requests} request${f.joined_requests === 1 ? '' : 's'} joined, ${f.bad_lines} bad line${f.bad_lines === 1 ? '' : 's'}`,
    );
  notes.push(
    `quality retention = mean served / mean always-best gate score over shadowed requests (routes with shadow: {sample}); routing accuracy is estimated on requests first routed below the top tier: wrong when the first answer failed the gate, right when it passed and its shadow score ≥ best − ${report.epsilon}.`,
  );
  return notes;
}

/** The terminal rendering: two tables (headline metrics against the targets; details). */
export function renderTable(report: Report): string {
  const { headline, detail } = columns(report);
  const make = (head: string[], rows: string[][]) => {
    const table = new Table({ head, style: { head: [], border: [] }, wordWrap: true, colAligns: ['left', ...head.slice(1).map(() => 'right' as const)] });
    for (const row of rows) table.push(row);
    return table.toString();
  };
  return [...summaryLines(report), '', make(headline.head, headline.rows), '', make(detail.head, detail.rows), '', ...noteLines(report)].join('\n') + '\n';
}

function markdownTable(head: string[], rows: string[][]): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${head.map((h) => cell(h.replace(/\n/g, ' '))).join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

export function renderMarkdown(report: Report): string {
  const { headline, detail } = columns(report);
  return [
    '# tiergate report',
    '',
    ...summaryLines(report),
    '',
    '## Against the targets',
    '',
    markdownTable(headline.head, headline.rows),
    '',
    '## Details',
    '',
    markdownTable(detail.head, detail.rows),
    '',
    ...noteLines(report).map((n) => `- ${n}`),
    '',
  ].join('\n');
}
