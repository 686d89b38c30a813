// The gate: the route's evaluators score an answer; below the threshold the ladder
// (src/pipeline/execute.ts) climbs. Its input checks score the request before any model
// is called.
import { TiergateError, errorMessage } from '../common/errors.ts';
import { isTruthy } from '../expressions/compile.ts';
import type { EvalInput, Evaluation, InputCheckInput } from '../plugin-contract/plugin-api.ts';
import type { EvaluatorResult, GateResult } from '../observe/decision-log.ts';
import type { Gate, GateCombine, GateEvaluator } from '../policy/runtime.ts';
import type { Answer, ExecutionContext } from './execution-context.ts';
import { costOf } from './usage.ts';

/**
 * Runs the evaluators that apply to this request (`when`) in parallel, each through
 * `judge`, combines their scores and holds them against `threshold`. An evaluator that
 * throws scores 0: a gate that cannot judge does not wave anything through. `eachMet`:
 * every evaluator that ran reached its own threshold.
 */
async function verdict(
  ctx: ExecutionContext,
  entries: readonly GateEvaluator[],
  combine: GateCombine,
  threshold: number,
  judge: (entry: GateEvaluator) => Promise<Evaluation>,
): Promise<{ result: GateResult; eachMet: boolean }> {
  const started = performance.now();
  const { routed } = ctx;
  let judgeCost = 0;
  const evaluators = await Promise.all(
    entries.map(async (entry): Promise<EvaluatorResult> => {
      const base = { name: entry.name, weight: entry.weight, threshold: entry.threshold };
      try {
        if (entry.when && !isTruthy(await entry.when.evaluate(routed.input))) return { ...base, score: null, skipped: true };
        const evaluation = await judge(entry);
        for (const call of evaluation.spent ?? []) {
          const judgeModel = ctx.runtime.models.get(call.model);
          if (judgeModel) judgeCost += costOf(judgeModel, call.usage);
        }
        const score = Number.isFinite(evaluation.score) ? Math.min(1, Math.max(0, evaluation.score)) : 0;
        return { ...base, score, ...(evaluation.details ? { details: evaluation.details } : {}) };
      } catch (err) {
        return { ...base, score: 0, error: errorMessage(err) };
      }
    }),
  );
  const scored = evaluators.filter((e) => !e.skipped) as Array<EvaluatorResult & { score: number }>;
  let score: number | null = null;
  if (scored.length > 0) {
    if (combine === 'min') score = Math.min(...scored.map((e) => e.score));
    else if (combine === 'mean') score = scored.reduce((sum, e) => sum + e.score, 0) / scored.length;
    else score = scored.reduce((sum, e) => sum + e.score * e.weight, 0) / scored.reduce((sum, e) => sum + e.weight, 0);
  }
  const eachMet = scored.every((e) => e.threshold === null || e.score >= e.threshold);
  const result: GateResult = {
    score,
    // No evaluator applied to this request: nothing to hold it back.
    passed: score === null || (score >= threshold && eachMet),
    threshold,
    evaluators,
    cost_usd: judgeCost,
    latency_ms: performance.now() - started,
  };
  return { result, eachMet };
}

/** Scores an answer with the route's gate. Evaluator failures score 0: a gate that cannot judge does not wave an answer through. */
export async function runGate(ctx: ExecutionContext, gate: Gate, answer: Answer): Promise<GateResult> {
  const { routed } = ctx;
  const input: EvalInput = { request: routed.view, response: answer.result, features: routed.features, model: answer.model.spec };
  const { result, eachMet } = await verdict(ctx, gate.evaluators, gate.combine, gate.threshold, (entry) => entry.evaluator.evaluate(input, ctx.client.signal));
  const score = result.score;
  const costs = routed.route?.costs;
  const tier = answer.model.tier;
  // cascade is for answers that could still climb: at the top of the ladder (or for a
  // model in no tier) there is no cheaper-vs-stronger trade for the break-even to weigh,
  // so the threshold rule stays.
  if (gate.decide === 'cascade' && score !== null && costs && tier !== null && tier < ctx.runtime.tiers.length - 1) {
    // The router's confidence speaks for the tier it chose; a tier climbed to (or a
    // speculative call) has no decision behind it, so its prior is neutral.
    const prior = answer.attempt.role === 'routed' ? (routed.prior ?? NEUTRAL_PRIOR) : NEUTRAL_PRIOR;
    const posterior = cascadePosterior(prior, score);
    result.decide = 'cascade';
    result.prior = prior;
    result.posterior = posterior;
    result.break_even = costs.breakEven;
    result.passed = posterior >= costs.breakEven && eachMet;
  }
  return result;
}

/**
 * Runs the route's input checks on the request, before any model is called, and records
 * the verdict on the context (the decision line's input_check). Rejects with
 * TG_ERR_GATE_INPUT_REFUSED when a check fails and the route refuses; with on_fail:
 * serve the request goes on.
 */
export async function checkInput(ctx: ExecutionContext): Promise<void> {
  const route = ctx.routed.route;
  const checks = route?.gate?.inputChecks;
  if (!route || !checks) return;
  const input: InputCheckInput = { request: ctx.routed.view, features: ctx.routed.features };
  // Every check must hold: one failed check is enough to hold the request back, whatever the others say.
  const { result } = await verdict(ctx, checks.evaluators, 'min', checks.threshold, (entry) => {
    if (!entry.evaluator.checkInput) throw new Error(`evaluator "${entry.name}" cannot check a request`);
    return entry.evaluator.checkInput(input, ctx.client.signal);
  });
  ctx.inputCheck = result;
  if (!result.passed && checks.onFail === 'refuse') throw new TiergateError('TG_ERR_GATE_INPUT_REFUSED', { route: route.name, failed: failedChecks(result) });
}

/** The evaluators that held a verdict back, by name and score: what a refusal tells the client (never an answer's text). */
export function failedChecks(result: GateResult): string {
  const failed = result.evaluators.filter((e) => e.score !== null && (e.score < result.threshold || (e.threshold !== null && e.score < e.threshold)));
  const listed = (failed.length > 0 ? failed : result.evaluators.filter((e) => e.score !== null)).map(
    (e) => `${e.name} scored ${Number(e.score?.toFixed(3))}${e.error ? ' (it failed)' : ''}`,
  );
  return `${listed.join(', ')}; the threshold is ${result.threshold}`;
}

/** The errors of a gate that refused (gate.on_fail, input_checks.on_fail: refuse): the client gets an error, not an answer, and the decision line's gate says "refused". */
export const GATE_REFUSALS: ReadonlySet<string> = new Set(['TG_ERR_GATE_INPUT_REFUSED', 'TG_ERR_GATE_ANSWER_REFUSED']);

/** The prior of an answer no routing decision vouches for: log-odds 0, so the gate's score alone decides. */
export const NEUTRAL_PRIOR = 0.5;

// Clamped so that neither side can be certain: a router at 1.0 (rules default to it)
// or a gate at 0 would otherwise make the other's evidence count for nothing.
const clamp = (p: number) => Math.min(0.99, Math.max(0.01, p));
const logit = (p: number) => Math.log(p / (1 - p));

/**
 * The probability that an answer is good, from the router's prior and the gate's score,
 * both read as probabilities and taken as independent evidence: their log-odds add,
 * logit(p) = logit(prior) + logit(score).
 */
export function cascadePosterior(prior: number, score: number): number {
  const odds = logit(clamp(prior)) + logit(clamp(score));
  return 1 / (1 + Math.exp(-odds));
}
