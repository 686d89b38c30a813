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
  return {
    score,
    // No evaluator applied to this request: nothing to hold the answer back.
    passed: score === null || (score >= gate.threshold && eachMet),
    threshold: gate.threshold,
    evaluators,
    cost_usd: judgeCost,
    latency_ms: performance.now() - started,
  };
}
