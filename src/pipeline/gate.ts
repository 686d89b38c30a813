// The gate: the route's evaluators score an answer; below the threshold the ladder
// (src/pipeline/execute.ts) climbs.
import { errorMessage } from '../common/errors.ts';
import { isTruthy } from '../expressions/compile.ts';
import type { EvalInput } from '../plugin-contract/plugin-api.ts';
import type { EvaluatorResult, GateResult } from '../observe/decision-log.ts';
import type { Gate } from '../policy/runtime.ts';
import type { Answer, ExecutionContext } from './execution-context.ts';
import { costOf } from './usage.ts';

/** Scores an answer with the route's gate. Evaluator failures score 0: a gate that cannot judge does not wave an answer through. */
export async function runGate(ctx: ExecutionContext, gate: Gate, answer: Answer): Promise<GateResult> {
  const started = performance.now();
  const { routed } = ctx;
  const input: EvalInput = { request: routed.view, response: answer.result, features: routed.features, model: answer.model.spec };
  let judgeCost = 0;
  const evaluators = await Promise.all(
    gate.evaluators.map(async (entry): Promise<EvaluatorResult> => {
      const base = { name: entry.name, weight: entry.weight, threshold: entry.threshold };
      try {
        if (entry.when && !isTruthy(await entry.when.evaluate(routed.input))) return { ...base, score: null, skipped: true };
        const evaluation = await entry.evaluator.evaluate(input, ctx.client.signal);
        for (const call of evaluation.spent ?? []) {
          const judge = ctx.runtime.models.get(call.model);
          if (judge) judgeCost += costOf(judge, call.usage);
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
    if (gate.combine === 'min') score = Math.min(...scored.map((e) => e.score));
    else if (gate.combine === 'mean') score = scored.reduce((sum, e) => sum + e.score, 0) / scored.length;
    else score = scored.reduce((sum, e) => sum + e.score * e.weight, 0) / scored.reduce((sum, e) => sum + e.weight, 0);
  }
  const eachMet = scored.every((e) => e.threshold === null || e.score >= e.threshold);
  const result: GateResult = {
    score,
    // No evaluator applied to this request: nothing to hold the answer back.
    passed: score === null || (score >= gate.threshold && eachMet),
    threshold: gate.threshold,
    evaluators,
    cost_usd: judgeCost,
    latency_ms: performance.now() - started,
  };
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
