// `tiergate eval`: recorded outcomes replayed through the real request path.
//
// The user's policy is built for real (buildRuntime), with two edits made to its data
// before validation: every model answers through the replay provider, which looks up
// what the mapped dataset model answered on the row, and (in recorded gate mode) the
// route's evaluators become the recorded_score evaluator, keeping threshold, combine and
// max_escalations. Each row then goes through requestView → routeRequest → execute,
// exactly as a request to the gateway does, and the per-row outcome (first tier, served
// tier, escalation, recorded quality of the served answer, cost of every call) feeds the
// metrics of src/analysis/metrics.ts. A threshold sweep re-executes every row with the
// gate threshold overridden, which gives the policy's cost–quality curve.
//
// The replay provider and the recorded_score evaluator are found by the capability their
// meta declares (pluginWithCapability), never by name; the runtime then discovers and
// loads them like any other plugin.
import path from 'node:path';
import type winston from 'winston';
import { PolicyErrors, TiergateError, errorMessage } from '../../common/errors.ts';
import { compileExpression, isTruthy } from '../../expressions/compile.ts';
import { ClientLink, costOf, execute, type AttemptRecord, type Execution } from '../../pipeline/execute.ts';
import { createLogger } from '../../observe/logger.ts';
import { readPolicySource, type PolicySource } from '../../policy/source.ts';
import { requestView, routeRequest, type ChatBody, type RoutedRequest } from '../../pipeline/route.ts';
import { buildRuntime, type RouteRuntime, type Runtime } from '../../policy/runtime.ts';
import { pluginWithCapability } from '../../policy/plugins.ts';
import {
  TARGETS,
  aiq,
  apgr,
  baselines as baselineMetrics,
  cpt,
  gatePrecisionRecall,
  oracleCurve,
  randomRouterCurve,
  summarize,
  toCurvePoint,
  type BaselineName,
  type CurvePoint,
  type GateConfusion,
  type PolicyMetrics,
  type PolicyRowResult,
  type RowOutcomes,
  quantileThresholds,
} from '../metrics.ts';
import { ROW_ID_FIELD, loadDataset, messagesOf, recordedCost, recordedUsage, scoreOf, type Dataset, type DatasetRow } from './dataset.ts';

export type GateMode = 'auto' | 'real' | 'recorded';
export type Split = 'train' | 'test' | 'all';

export interface EvalSettings {
  /** The policy file (gateway.yaml). */
  config: string;
  /** The JSONL dataset of recorded outcomes. */
  data: string;
  route: string;
  /** Policy model → dataset model. Models named like a dataset model map to it by themselves. */
  map?: Record<string, string>;
  split?: Split;
  /** JSONata over each row: the row is evaluated when it holds. */
  where?: string;
  gate?: GateMode;
  /** A tier's answer is good enough when its recorded score reaches this (default 0.5). */
  qualityTarget?: number;
  /** Gate thresholds to sweep, evenly spaced over [0, 1] (0 = no sweep). */
  sweep?: number;
  /** Evaluate at most this many rows (after split and where). */
  limit?: number;
  env?: NodeJS.ProcessEnv;
  logger?: winston.Logger;
  /** Called as rows finish (phase: "policy" or "threshold 0.30"). */
  onProgress?: (done: number, total: number, phase: string) => void;
}

/** One evaluated row: what the metrics see, plus what the report explains. */
export interface RowRun extends PolicyRowResult {
  /** Whose judgement the gate used on this row. */
  gate: 'real' | 'recorded' | 'none';
  /** The policy models called, in order (failed calls included). */
  calls: string[];
  /** The served answer's policy model. */
  servedModel: string;
  /** Some call's cost was estimated from policy prices rather than recorded. */
  costEstimated: boolean;
}

export interface SweepPoint extends CurvePoint {
  threshold: number;
  escalation_rate: number;
  cost_savings: number;
  quality_retention: number;
  routing_accuracy: number;
}

export interface CurveMetrics {
  apgr: number | null;
  cpt50: number | null;
  cpt80: number | null;
  aiq: number | null;
}

export interface EvalReport {
  policy: { file: string; version: string; route: string; router: string; gate_evaluators: string[]; threshold: number | null; max_escalations: number | null };
  dataset: {
    file: string;
    rows: number;
    split: Split;
    where: string | null;
    limit: number | null;
    selected: number;
    evaluated: number;
    skipped: Array<{ reason: string; rows: number; examples: string[] }>;
  };
  tiers: Array<{ name: string; model: string; dataset_model: string }>;
  mapping: Record<string, string>;
  quality_target: number;
  gate: {
    mode: GateMode | 'none';
    real_rows: number;
    recorded_rows: number;
    /** Rows judged by real evaluators although some answer had no text (a placeholder was judged). */
    placeholder_rows: number;
    evaluator_errors: Array<{ evaluator: string; answers: number; example: string }>;
  };
  costs: { estimated: boolean; recorded_calls: number; estimated_calls: number };
  targets: typeof TARGETS;
  metrics: PolicyMetrics;
  baselines: Record<BaselineName, PolicyMetrics & CurvePoint>;
  curve_metrics: Record<'policy' | BaselineName, CurveMetrics>;
  gate_accuracy: GateConfusion | null;
  sweep: SweepPoint[];
  /** What the sweep varies: the gate's threshold, or the router's (a classifier's cut-off) when the router has one. */
  sweep_of: 'gate' | 'router';
  curves: { policy: CurvePoint[]; random: CurvePoint[]; oracle: CurvePoint[] };
  notes: string[];
  timing: { load_ms: number; build_ms: number; run_ms: number; sweep_ms: number; rows_per_second: number };
}

export interface EvalRun {
  report: EvalReport;
  rows: RowRun[];
  outcomes: RowOutcomes[];
}

/** The name of the provider the eval puts in place of every provider. */
const REPLAY_PROVIDER = 'tiergate_eval_replay';
const YIELD_EVERY = 200;

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function optionsError(reason: string): TiergateError {
  return new TiergateError('TG_ERR_EVAL_OPTIONS', { reason });
}

function list(names: Iterable<string>, max = 12): string {
  const all = [...names];
  return all.length <= max ? all.join(', ') : `${all.slice(0, max).join(', ')}, … (${all.length} in all)`;
}

// ---------------------------------------------------------------------------------
// The policy as data: which models the route can reach, and the mapping onto the dataset

interface PolicyShape {
  models: Record<string, { upstream?: unknown }>;
  tiers: Array<{ name: string; models: string[] }>;
  routes: Record<string, Record<string, unknown>>;
}

/** Enough of the policy's shape to map models; anything malformed is left for buildRuntime to report, located. */
function policyShape(data: unknown): PolicyShape | null {
  if (!isRecord(data) || !isRecord(data.models) || !Array.isArray(data.tiers) || !isRecord(data.routes)) return null;
  const tiers = data.tiers.filter((t): t is { name: string; models: string[] } => isRecord(t) && typeof t.name === 'string' && Array.isArray(t.models) && t.models.every((m) => typeof m === 'string'));
  if (tiers.length !== data.tiers.length) return null;
  return { models: data.models as PolicyShape['models'], tiers, routes: data.routes as PolicyShape['routes'] };
}

/** The route's own gate evaluators, by the names the gate reports. */
function evaluatorNames(route: Record<string, unknown> | undefined): string[] {
  const evaluators = isRecord(route?.gate) && Array.isArray(route.gate.evaluators) ? route.gate.evaluators : [];
  return evaluators.filter(isRecord).map((e) => String(e.name ?? e.plugin));
}

/** Policy model → dataset model, for every model of the ladder (and the route's model targets). */
export function resolveMapping(shape: PolicyShape, routeName: string, dataset: Dataset, explicit: Readonly<Record<string, string>>): Record<string, string> {
  const problems: string[] = [];
  const known = new Set(dataset.models);
  for (const [model, datasetModel] of Object.entries(explicit)) {
    if (!Object.hasOwn(shape.models, model)) problems.push(`--map ${model}=${datasetModel}: the policy has no model "${model}" (models: ${list(Object.keys(shape.models))})`);
    if (!known.has(datasetModel)) problems.push(`--map ${model}=${datasetModel}: the dataset has no model "${datasetModel}" (models: ${list(dataset.models)})`);
  }
  const required = new Set(shape.tiers.flatMap((t) => t.models));
  const route = shape.routes[routeName] ?? {};
  for (const key of ['default', 'fallback']) {
    const target = route[key];
    if (typeof target === 'string' && Object.hasOwn(shape.models, target)) required.add(target);
  }
  const mapping: Record<string, string> = {};
  for (const model of Object.keys(shape.models)) {
    const upstream = shape.models[model]?.upstream;
    const mapped = Object.hasOwn(explicit, model) ? explicit[model] : known.has(model) ? model : typeof upstream === 'string' && known.has(upstream) ? upstream : undefined;
    if (mapped !== undefined) mapping[model] = mapped;
    else if (required.has(model)) problems.push(`policy model "${model}" has no dataset model: give --map ${model}=<dataset model> (dataset models: ${list(dataset.models)})`);
  }
  if (problems.length > 0) throw new TiergateError('TG_ERR_EVAL_MAPPING', { reason: problems.join('; ') });
  return mapping;
}

/** The policy data with replayed answers (and, for the recorded gate, the recorded_score evaluator). */
/** The plugins that replay recorded outcomes and score with them, by what their meta declares. */
interface RecordedOutcomePlugins {
  replayProvider: string;
  recordedScoreEvaluator: string;
}

async function recordedOutcomePlugins(): Promise<RecordedOutcomePlugins> {
  const replayProvider = await pluginWithCapability('provider', 'replays-recorded-outcomes');
  const recordedScoreEvaluator = await pluginWithCapability('evaluator', 'scores-recorded-outcomes');
  if (!replayProvider || !recordedScoreEvaluator) {
    throw optionsError(`tiergate's plugins include no ${!replayProvider ? 'provider declaring the capability replays-recorded-outcomes' : 'evaluator declaring the capability scores-recorded-outcomes'}: eval cannot replay the dataset`);
  }
  return { replayProvider, recordedScoreEvaluator };
}

function rewriter(routeName: string, datasetFile: string, mapping: Readonly<Record<string, string>>, recordedGate: boolean, plugins: RecordedOutcomePlugins): (data: unknown) => unknown {
  return (data: unknown) => {
    if (!isRecord(data)) return data;
    const out = structuredClone(data);
    const providers = isRecord(out.providers) ? out.providers : {};
    out.providers = { ...providers, [REPLAY_PROVIDER]: { plugin: plugins.replayProvider, dataset: datasetFile } };
    if (isRecord(out.models)) {
      for (const [name, model] of Object.entries(out.models)) {
        if (!isRecord(model)) continue;
        // Every model answers from the dataset: an eval never calls a real provider.
        model.provider = REPLAY_PROVIDER;
        if (Object.hasOwn(mapping, name)) model.upstream = mapping[name];
      }
    }
    // A recorded outcome does not change on retry, and one row's missing record must not
    // put a model in cooldown for the rows after it.
    out.resilience = { ...(isRecord(out.resilience) ? out.resilience : {}), retries: 0, cooldown_ms: 0 };
    const route = isRecord(out.routes) ? out.routes[routeName] : undefined;
    if (recordedGate && isRecord(route) && isRecord(route.gate)) route.gate.evaluators = [{ plugin: plugins.recordedScoreEvaluator }];
    return out;
  };
}

// ---------------------------------------------------------------------------------
// Rows

interface PreparedRow {
  row: DatasetRow;
  body: ChatBody;
  gate: 'real' | 'recorded';
  placeholder: boolean;
}

async function selectRows(dataset: Dataset, split: Split, where: string | undefined, limit: number | undefined): Promise<DatasetRow[]> {
  let rows = split === 'all' ? [...dataset.rows] : dataset.rows.filter((r) => r.split === split);
  if (where !== undefined) {
    const compiled = compileExpression(where);
    if ('problem' in compiled) throw optionsError(`--where: JSONata: ${compiled.problem.message}`);
    const kept: DatasetRow[] = [];
    for (const row of rows) {
      let value: unknown;
      try {
        value = await compiled.expression.evaluate(row);
      } catch (err) {
        throw optionsError(`--where failed on row ${row.id}: ${errorMessage(err)}`);
      }
      if (isTruthy(value)) kept.push(row);
    }
    rows = kept;
  }
  return limit !== undefined ? rows.slice(0, limit) : rows;
}

/** What the rules of a route may read about a row: its metadata. */
function metadataOf(row: DatasetRow): Record<string, unknown> {
  const metadata: Record<string, unknown> = { row_id: row.id };
  for (const key of ['source', 'subset', 'split', 'prompt_format'] as const) if (row[key] !== undefined) metadata[key] = row[key];
  if (isRecord(row.meta)) metadata.meta = row.meta;
  return metadata;
}

// ---------------------------------------------------------------------------------
// One row through the pipeline

class Skip extends Error {}

interface EvalRuntime {
  runtime: Runtime;
  route: RouteRuntime;
}

/** The route with its gate threshold overridden: what a sweep point executes. */
function withThreshold(route: RouteRuntime, threshold: number): RouteRuntime {
  return route.gate ? { ...route, gate: { ...route.gate, threshold } } : route;
}

/** The route with its router deciding at another threshold (Router.withThreshold). */
function withRouterThreshold(route: RouteRuntime, threshold: number): RouteRuntime {
  return route.router.withThreshold ? { ...route, router: route.router.withThreshold(threshold) } : route;
}

function datasetModelOf(runtime: Runtime, model: string): string {
  return runtime.models.get(model)?.spec.upstream ?? model;
}

interface RowCost {
  cost: number;
  estimated: boolean;
  recordedCalls: number;
  estimatedCalls: number;
}

/** Every call's cost: the recorded one where the dataset has it, else the policy's price of the (recorded or estimated) tokens. */
function costOfAttempts(runtime: Runtime, row: DatasetRow, attempts: readonly AttemptRecord[]): RowCost {
  const out: RowCost = { cost: 0, estimated: false, recordedCalls: 0, estimatedCalls: 0 };
  for (const attempt of attempts) {
    out.cost += attempt.gate?.cost_usd ?? 0;
    if (attempt.outcome === 'ok') {
      const recorded = recordedCost(row.outcomes[datasetModelOf(runtime, attempt.model)]);
      if (recorded !== null) {
        out.cost += recorded;
        out.recordedCalls++;
        continue;
      }
    }
    if (attempt.outcome === 'ok' || attempt.cost_usd > 0) {
      out.cost += attempt.cost_usd;
      out.estimated = true;
      out.estimatedCalls++;
    }
  }
  return out;
}

interface Executed {
  run: RowRun;
  cost: RowCost;
  execution: Execution;
}

async function executeRow(target: EvalRuntime, routed: RoutedRequest, prepared: PreparedRow, route: RouteRuntime, signal: AbortSignal): Promise<Executed> {
  const { runtime } = target;
  const { row, body } = prepared;
  const attempts: AttemptRecord[] = [];
  let execution: Execution;
  const client = ClientLink.following(signal);
  try {
    execution = await execute({ runtime, routed: route === routed.route ? routed : { ...routed, route }, body, client, startedAt: performance.now(), attempts });
  } catch (err) {
    // Grouped by code in the report; the rows listed show where to look.
    throw new Skip(`no model answered (${err instanceof TiergateError ? err.code : errorMessage(err)})`);
  } finally {
    client.release();
  }
  const firstTier = routed.model.tier as number;
  const servedTier = execution.answer.model.tier;
  if (servedTier === null) throw new Skip(`served by model ${execution.answer.model.spec.name}, which is in no tier`);
  const quality = scoreOf(row, datasetModelOf(runtime, execution.answer.model.spec.name)) as number;
  const cost = costOfAttempts(runtime, row, execution.attempts);
  const first = execution.attempts.find((a) => a.role === 'routed' && a.outcome === 'ok');
  return {
    execution,
    cost,
    run: {
      id: row.id,
      firstTier,
      servedTier,
      quality,
      cost: cost.cost,
      escalated: execution.escalations > 0,
      firstPassedGate: route.gate && first?.gate ? first.gate.passed : null,
      gate: route.gate ? prepared.gate : 'none',
      calls: execution.attempts.map((a) => a.model),
      servedModel: execution.answer.model.spec.name,
      costEstimated: cost.estimated,
    },
  };
}

// ---------------------------------------------------------------------------------
// The eval

/** RouteLLM's APGR and CPT on the strong-share axis; RouterBench's AIQ on the cost axis, with the curve anchored at `anchors`. */
function curveMetrics(curve: CurvePoint[], weak: number, strong: number, costRange: [number, number], anchors: CurvePoint[]): CurveMetrics {
  const finite = (x: number | null) => (x === null || !Number.isFinite(x) ? null : x);
  return {
    apgr: finite(apgr(curve, weak, strong)),
    cpt50: finite(cpt(curve, weak, strong, 0.5)),
    cpt80: finite(cpt(curve, weak, strong, 0.8)),
    aiq: finite(aiq([...curve, ...anchors], { costRange })),
  };
}

/** `points` thresholds evenly spaced over [0, 1], both ends included. */
function thresholds(points: number): number[] {
  if (points <= 0) return [];
  return Array.from({ length: points }, (_, i) => Math.round((i / (points - 1)) * 1e6) / 1e6);
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runEval(settings: EvalSettings): Promise<EvalRun> {
  const logger = settings.logger ?? createLogger({ level: 'error' });
  const qualityTarget = settings.qualityTarget ?? 0.5;
  const split = settings.split ?? 'all';
  const gateMode = settings.gate ?? 'auto';
  if (!(qualityTarget >= 0 && qualityTarget <= 1)) throw optionsError(`--quality-target must be in [0, 1], not ${qualityTarget}`);
  if (settings.sweep !== undefined && (!Number.isInteger(settings.sweep) || settings.sweep < 0 || settings.sweep === 1)) throw optionsError(`--sweep takes 0 (no sweep) or at least 2 points, not ${settings.sweep}`);
  const started = performance.now();

  // The dataset and the rows to evaluate.
  const datasetFile = path.resolve(settings.data);
  const dataset = loadDataset(datasetFile);
  const selected = await selectRows(dataset, split, settings.where, settings.limit);
  if (selected.length === 0) throw optionsError(`no rows to evaluate: ${dataset.rows.length} rows in the dataset, none left after --split ${split}${settings.where ? ` and --where` : ''}`);

  // The policy as written: the route and the mapping are checked before anything is built.
  let source: PolicySource;
  try {
    source = readPolicySource(settings.config, settings.env);
  } catch (caught) {
    throw new PolicyErrors(Array.isArray(caught) ? caught : [caught as TiergateError]);
  }
  const shape = policyShape(source.data);
  if (shape && !Object.hasOwn(shape.routes, settings.route)) throw optionsError(`the policy has no route "${settings.route}" (routes: ${list(Object.keys(shape.routes))})`);
  const mapping = shape ? resolveMapping(shape, settings.route, dataset, settings.map ?? {}) : {};
  const loadMs = performance.now() - started;

  // Which gate judges which row.
  const ladderModels = shape ? [...new Set(shape.tiers.flatMap((t) => t.models))] : [];
  const hasTexts = (row: DatasetRow) => ladderModels.every((m) => {
    const outcome = row.outcomes[mapping[m]];
    return !outcome || typeof outcome.score !== 'number' || typeof outcome.response === 'string';
  });
  const prepared: PreparedRow[] = selected.map((row) => {
    const texts = hasTexts(row);
    const gate = gateMode === 'recorded' || (gateMode === 'auto' && !texts) ? 'recorded' : 'real';
    const body: ChatBody = { model: settings.route, messages: messagesOf(row), metadata: metadataOf(row), [ROW_ID_FIELD]: row.id };
    return { row, body, gate, placeholder: gate === 'real' && !texts };
  });

  // Build what is needed: the real gate, the recorded one, or both.
  const buildStarted = performance.now();
  const runtimes: Partial<Record<'real' | 'recorded', EvalRuntime>> = {};
  const recordedPlugins = await recordedOutcomePlugins();
  try {
    for (const mode of ['real', 'recorded'] as const) {
      if (!prepared.some((p) => p.gate === mode)) continue;
      // The dataset is named on the command line, not by the policy: its folder is granted.
      const runtime = await buildRuntime(settings.config, { logger, mode: 'validate', env: settings.env, allowedPaths: [path.dirname(datasetFile)], rewrite: rewriter(settings.route, datasetFile, mapping, mode === 'recorded', recordedPlugins) });
      runtimes[mode] = { runtime, route: runtime.routes.get(settings.route) as RouteRuntime };
    }
    const buildMs = performance.now() - buildStarted;
    const any = (runtimes.real ?? runtimes.recorded) as EvalRuntime;
    const { runtime } = any;
    const gate = any.route.gate;
    // Without a gate there is nothing to judge: every row runs on the runtime built.
    if (!gate) for (const p of prepared) p.gate = runtimes.real ? 'real' : 'recorded';

    // Baseline outcomes: what each tier serves on each row, i.e. its first model with a
    // recorded result (the replay fails the others over, as a model that is down).
    const skipped = new Map<string, string[]>();
    const skip = (reason: string, id: string) => {
      const ids = skipped.get(reason);
      if (ids) ids.push(id);
      else skipped.set(reason, [id]);
    };
    const outcomes = new Map<string, RowOutcomes>();
    const usable: PreparedRow[] = [];
    for (const p of prepared) {
      const tiers: RowOutcomes['tiers'] = [];
      let missing: string | null = null;
      for (const tier of runtime.tiers) {
        const model = tier.models.map((m) => runtime.models.get(m)!).find((m) => scoreOf(p.row, m.spec.upstream) !== null);
        if (!model) {
          missing = `no recorded score for any model of tier ${tier.name} (${tier.models.map((m) => datasetModelOf(runtime, m)).join(', ')})`;
          break;
        }
        const outcome = p.row.outcomes[model.spec.upstream];
        const recorded = recordedCost(outcome);
        const quality = outcome.score as number;
        tiers.push(recorded !== null ? { quality, cost: recorded } : { quality, cost: costOf(model, recordedUsage(p.body.messages, outcome).usage), costEstimated: true });
      }
      if (missing) skip(missing, p.row.id);
      else {
        outcomes.set(p.row.id, { id: p.row.id, tiers });
        usable.push(p);
      }
    }

    const preparedOf = new Map(usable.map((p) => [p.row.id, p]));
    // A router with a threshold of its own (a classifier) is swept instead of the gate: its
    // cut-off is what trades cost for quality there.
    const routerSweep = typeof any.route.router.withThreshold === 'function';
    let points = gate || routerSweep ? thresholds(settings.sweep ?? 0) : [];
    let total = usable.length * (1 + points.length);
    let done = 0;
    const signal = new AbortController().signal;
    const progress = (phase: string) => {
      done++;
      if (settings.onProgress && (done % 50 === 0 || done === total)) settings.onProgress(done, total, phase);
    };
    settings.onProgress?.(0, total, 'policy');

    // The policy as configured.
    const runStarted = performance.now();
    const routedOf = new Map<string, RoutedRequest>();
    const runs: RowRun[] = [];
    const errors = new Map<string, { answers: number; example: string }>();
    let recordedCalls = 0;
    let estimatedCalls = 0;
    for (const [i, p] of usable.entries()) {
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await tick();
      const target = runtimes[p.gate] as EvalRuntime;
      try {
        const view = requestView(p.body, {}, target.runtime.server.headerAllowlist);
        const routed = await routeRequest(target.runtime, p.body, view);
        if (routed.model.tier === null) throw new Skip(`routed to model ${routed.model.spec.name}, which is in no tier`);
        routedOf.set(p.row.id, routed);
        const { run, cost, execution } = await executeRow(target, routed, p, target.route, signal);
        runs.push(run);
        recordedCalls += cost.recordedCalls;
        estimatedCalls += cost.estimatedCalls;
        for (const attempt of execution.attempts) {
          for (const e of attempt.gate?.evaluators ?? []) {
            if (!e.error) continue;
            const entry = errors.get(e.name) ?? { answers: 0, example: e.error };
            entry.answers++;
            errors.set(e.name, entry);
          }
        }
      } catch (err) {
        if (!(err instanceof Skip)) throw err;
        skip(err.message, p.row.id);
        outcomes.delete(p.row.id);
      }
      progress('policy');
    }
    const runMs = performance.now() - runStarted;
    if (runs.length === 0) throw optionsError(`no row could be evaluated: ${[...skipped].map(([reason, ids]) => `${ids.length} × ${reason}`).join('; ')}`);
    const evaluated = runs.map((r) => outcomes.get(r.id) as RowOutcomes);
    // A router that says where its decisions flip gets its sweep at the quantiles of those
    // values: evenly spaced thresholds would bunch where its probabilities are dense.
    const flips = routerSweep ? [...routedOf.values()].flatMap((r) => r.thresholds ?? []) : [];
    if (routerSweep && flips.length > 0 && points.length > 0) {
      points = quantileThresholds(flips, points.length);
      total = usable.length * (1 + points.length);
    }

    const metrics = summarize(evaluated, runs, qualityTarget);
    const base = baselineMetrics(evaluated, qualityTarget, metrics.total_cost);

    // The threshold sweep: the same rows, the same routing, the gate's threshold moved.
    const sweepStarted = performance.now();
    const sweep: SweepPoint[] = [];
    for (const threshold of points) {
      const phase = `${routerSweep ? 'router ' : ''}threshold ${threshold.toFixed(2)}`;
      const sweepRoute = routerSweep ? withRouterThreshold : withThreshold;
      const routes = { real: runtimes.real && sweepRoute(runtimes.real.route, threshold), recorded: runtimes.recorded && sweepRoute(runtimes.recorded.route, threshold) };
      const results: PolicyRowResult[] = [];
      for (const [i, run] of runs.entries()) {
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await tick();
        const p = preparedOf.get(run.id) as PreparedRow;
        const target = runtimes[p.gate] as EvalRuntime;
        try {
          const route = routes[p.gate] as RouteRuntime;
          const routed = routerSweep ? await routeRequest(target.runtime, p.body, requestView(p.body, {}, target.runtime.server.headerAllowlist), route) : (routedOf.get(run.id) as RoutedRequest);
          if (routed.model.tier === null) throw new Skip(`routed to model ${routed.model.spec.name}, which is in no tier`);
          results.push((await executeRow(target, routed, p, route, signal)).run);
        } catch (err) {
          if (!(err instanceof Skip)) throw err;
          // The same models answered this row at the policy's threshold, so this does not
          // happen; should it, the point keeps the row with its policy outcome.
          results.push(run);
        }
        progress(phase);
      }
      const m = summarize(evaluated, results, qualityTarget);
      sweep.push({ ...toCurvePoint(m, phase), threshold, escalation_rate: m.escalation_rate, cost_savings: m.cost_savings, quality_retention: m.quality_retention, routing_accuracy: m.routing_accuracy });
    }
    const sweepMs = performance.now() - sweepStarted;

    // Curves and the metrics over them.
    const weak = base.always_cheapest.mean_quality;
    const strong = base.always_best.mean_quality;
    const costRange: [number, number] = [Math.min(base.always_cheapest.total_cost, base.always_best.total_cost), Math.max(base.always_cheapest.total_cost, base.always_best.total_cost)];
    const policyPoint = toCurvePoint(metrics, routerSweep ? 'policy (router threshold as configured)' : `policy (threshold ${gate ? gate.threshold.toFixed(2) : 'none'})`);
    const policyCurve = [...sweep.map(({ label, strong_share, cost, quality }) => ({ label, strong_share, cost, quality })), policyPoint].sort((a, b) => a.strong_share - b.strong_share || a.cost - b.cost);
    const randomCurve = randomRouterCurve(evaluated, 10);
    const oracle = oracleCurve(evaluated, 10);
    // Any router can fall back to one tier for everything, so every curve is anchored at
    // always-cheapest and always-best, for AIQ as APGR anchors at (0, weak) and (1, strong).
    // A fixed baseline is one point, not a curve: it has none of these numbers.
    const anchors = [base.always_cheapest, base.always_best].map((b) => toCurvePoint(b, b.label));
    const noCurve: CurveMetrics = { apgr: null, cpt50: null, cpt80: null, aiq: null };
    const twoTiers = runtime.tiers.length >= 2;
    const curve_metrics: EvalReport['curve_metrics'] = {
      policy: curveMetrics(policyCurve, weak, strong, costRange, anchors),
      always_cheapest: noCurve,
      always_best: noCurve,
      random_equal_cost: twoTiers ? curveMetrics(randomCurve, weak, strong, costRange, anchors) : noCurve,
      oracle: twoTiers ? curveMetrics(oracle, weak, strong, costRange, anchors) : noCurve,
    };

    const skippedList = [...skipped].map(([reason, ids]) => ({ reason, rows: ids.length, examples: ids.slice(0, 3) }));
    const real = runs.filter((r) => r.gate === 'real').length;
    const recorded = runs.filter((r) => r.gate === 'recorded').length;
    const placeholders = usable.filter((p) => p.placeholder && outcomes.has(p.row.id)).length;
    const notes: string[] = [];
    if (routerSweep && points.length > 0) notes.push(`the sweep varies router ${any.route.routerPlugin}'s threshold${gate ? ' (the gate keeps its own)' : ''}${flips.length > 0 ? ', at the quantiles of its scores' : ''}`);
    if (!gate) notes.push(`route ${settings.route} has no gate: nothing escalates${routerSweep ? '' : ', and there is no threshold to sweep'}`);
    else if (recorded > 0 && real > 0) notes.push(`gate: the route's evaluators judged the answer texts of ${real} rows; ${recorded} rows without texts were gated on their recorded scores`);
    else if (recorded > 0) notes.push(`gate: recorded scores (a perfect judge) stand in for the route's evaluators${gateMode === 'auto' ? ': the dataset has no answer texts for these rows' : ''}`);
    else notes.push(`gate: the route's own evaluators judged the recorded answer texts`);
    if (placeholders > 0) notes.push(`${placeholders} rows have no answer text for some model: the real evaluators judged a placeholder there`);
    if (metrics.costs_estimated || estimatedCalls > 0) notes.push(`costs estimated from the policy's prices × tokens of prompt and recorded answer (~4 characters per token) for ${estimatedCalls} of ${estimatedCalls + recordedCalls} calls: the dataset records no cost for them`);
    for (const [name, e] of errors) notes.push(`evaluator ${name} failed on ${e.answers} answers (scored 0), e.g. ${e.example}`);
    if (points.length === 0) notes.push('APGR, CPT and AIQ of the policy use its one operating point (pass --sweep N for the threshold curve)');

    const routeRuntime = any.route;
    const report: EvalReport = {
      policy: {
        file: runtime.file,
        version: runtime.version,
        route: settings.route,
        router: routeRuntime.routerPlugin,
        gate_evaluators: shape ? evaluatorNames(shape.routes[settings.route]) : [],
        threshold: gate ? gate.threshold : null,
        max_escalations: gate ? gate.maxEscalations : null,
      },
      dataset: { file: path.relative(process.cwd(), datasetFile) || datasetFile, rows: dataset.rows.length, split, where: settings.where ?? null, limit: settings.limit ?? null, selected: selected.length, evaluated: runs.length, skipped: skippedList },
      tiers: runtime.tiers.map((t) => ({ name: t.name, model: t.models[0], dataset_model: datasetModelOf(runtime, t.models[0]) })),
      mapping,
      quality_target: qualityTarget,
      gate: { mode: gate ? gateMode : 'none', real_rows: gate ? real : 0, recorded_rows: gate ? recorded : 0, placeholder_rows: placeholders, evaluator_errors: [...errors].map(([evaluator, e]) => ({ evaluator, ...e })) },
      costs: { estimated: metrics.costs_estimated || estimatedCalls > 0, recorded_calls: recordedCalls, estimated_calls: estimatedCalls },
      targets: TARGETS,
      metrics,
      baselines: base,
      curve_metrics,
      gate_accuracy: gate ? gatePrecisionRecall(runs, evaluated, qualityTarget) : null,
      sweep,
      sweep_of: routerSweep ? 'router' : 'gate',
      curves: { policy: policyCurve, random: randomCurve, oracle },
      notes,
      timing: { load_ms: Math.round(loadMs), build_ms: Math.round(buildMs), run_ms: Math.round(runMs), sweep_ms: Math.round(sweepMs), rows_per_second: Math.round((runs.length * (1 + points.length)) / Math.max((runMs + sweepMs) / 1000, 1e-3)) },
    };
    return { report, rows: runs, outcomes: evaluated };
  } finally {
    for (const target of Object.values(runtimes)) await target?.runtime.dispose();
  }
}
