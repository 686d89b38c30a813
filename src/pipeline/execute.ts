// The ladder: from a routing decision to the complete answer the client gets.
//
//   tier call   the routed tier's models, with failover (src/pipeline/failover.ts)
//   gate        the route's evaluators score the answer (src/pipeline/gate.ts); below
//               the threshold the request climbs the ladder (at most max_escalations),
//               then the route's fallback
//   speculate   when the decision is unsure, the routed tier and the next one are
//               called at once; the strong call is aborted if the cheap answer passes
//
// A streamed answer that is not buffered for its gate does not come here: it is read
// through as it arrives (src/pipeline/stream.ts). When no answer passes, the gate's
// on_fail says whether the best one is served or none (TG_ERR_GATE_ANSWER_REFUSED).
import { TiergateError } from '../common/errors.ts';
import { isTruthy } from '../expressions/compile.ts';
import type { AttemptRecord, AttemptRole } from '../observe/decision-log.ts';
import type { Gate, ModelRuntime } from '../policy/runtime.ts';
import { modelsFrom, resolveTarget, tierOfTarget } from '../policy/targets.ts';
import { ClientGone } from './cancellation.ts';
import type { Answer, Execution, ExecutionContext } from './execution-context.ts';
import { TierFailure, allFailed, callModels, routedOrFallback } from './failover.ts';
import { failedChecks, runGate } from './gate.ts';

function execution(answer: Answer, attempts: AttemptRecord[], escalations: number, gate: Execution['gate'], speculated: boolean): Execution {
  const totalCostUsd = attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0);
  return { kind: 'answer', answer, attempts, escalations, gate, qualityScore: answer.attempt.gate?.score ?? null, totalCostUsd, speculated };
}

async function speculativeStart(ctx: ExecutionContext, gate: Gate, startTier: number): Promise<boolean> {
  const route = ctx.routed.route;
  if (!route?.speculate || startTier >= ctx.runtime.tiers.length - 1 || gate.maxEscalations < 1) return false;
  const { routed } = ctx;
  const decision = { tier: routed.tier, model: routed.model.spec.name, confidence: routed.confidence, reason: routed.reason };
  try {
    const costs = route.costs ? { under_routing: route.costs.underRouting, over_routing: route.costs.overRouting, break_even: route.costs.breakEven } : null;
    return isTruthy(await route.speculate.evaluate({ ...routed.input, decision, costs }));
  } catch {
    return false;
  }
}

/**
 * Runs a routed request to its final answer: tier call, gate, ladder, fallback,
 * speculation. Rejects with ClientGone, a client error, or TG_ERR_ALL_FAILED.
 */
export async function execute(ctx: ExecutionContext): Promise<Execution> {
  const { runtime, routed, attempts } = ctx;
  const gate = routed.route?.gate ?? null;
  const firstModels = modelsFrom(runtime, routed.model);

  if (!gate) {
    try {
      const answer = await routedOrFallback(ctx, (models, role) => callModels(ctx, models, role));
      return execution(answer, attempts, answer.attempt.role === 'fallback' ? 1 : 0, 'none', false);
    } catch (err) {
      if (err instanceof TierFailure) throw allFailed(attempts, err.lastError);
      throw err;
    }
  }

  const route = routed.route!;
  const candidates: Answer[] = [];
  let lastError: TiergateError | null = null;
  let escalations = 0;
  let speculated = false;
  let tier = routed.model.tier;
  const tried = new Set<number>();

  const gated = async (answer: Answer): Promise<boolean> => {
    answer.attempt.gate = await runGate(ctx, gate, answer);
    candidates.push(answer);
    return answer.attempt.gate.passed;
  };
  const attemptTier = async (models: readonly ModelRuntime[], role: AttemptRole): Promise<Answer | null> => {
    try {
      return await callModels(ctx, models, role);
    } catch (err) {
      if (err instanceof TierFailure) {
        lastError = err.lastError;
        return null;
      }
      throw err;
    }
  };

  // Step 1: the routed tier (with the next one alongside, when speculating).
  if (tier !== null && (await speculativeStart(ctx, gate, tier))) {
    speculated = true;
    const strongAbort = new AbortController();
    const onClientGone = () => strongAbort.abort(new ClientGone());
    ctx.client.signal.addEventListener('abort', onClientGone, { once: true });
    const strongTier = tier + 1;
    const strong = callModels(ctx, resolveTarget(runtime, { kind: 'tier', tier: strongTier }), 'speculative', strongAbort.signal).then(
      (answer) => ({ answer }),
      (error: unknown) => ({ error }),
    );
    try {
      tried.add(tier);
      const cheap = await attemptTier(firstModels, 'routed');
      if (cheap && (await gated(cheap))) {
        strongAbort.abort(new Error('the cheap answer passed the gate'));
        await strong;
        return execution(cheap, attempts, 0, 'passed', true);
      }
      const settled = await strong;
      tried.add(strongTier);
      escalations = 1;
      tier = strongTier;
      if ('answer' in settled) {
        if (await gated(settled.answer)) return execution(settled.answer, attempts, escalations, 'passed', true);
      } else if (settled.error instanceof TierFailure) {
        lastError = settled.error.lastError;
      } else {
        throw settled.error;
      }
    } finally {
      ctx.client.signal.removeEventListener('abort', onClientGone);
    }
  } else {
    if (tier !== null) tried.add(tier);
    const answer = await attemptTier(firstModels, 'routed');
    if (answer && (await gated(answer))) return execution(answer, attempts, 0, 'passed', false);
  }

  // Step 2: climb the ladder.
  while (tier !== null && escalations < gate.maxEscalations && tier < runtime.tiers.length - 1) {
    tier++;
    escalations++;
    tried.add(tier);
    const answer = await attemptTier(resolveTarget(runtime, { kind: 'tier', tier }), 'escalation');
    if (answer && (await gated(answer))) return execution(answer, attempts, escalations, 'passed', speculated);
  }

  // Step 3: the route's fallback (a gated route always has one), unless the ladder already tried it.
  const fallback = route.fallback!;
  const fallbackTier = tierOfTarget(runtime, fallback);
  const fallbackTried = fallback.kind === 'tier' ? tried.has(fallback.tier) : attempts.some((a) => a.model === fallback.model);
  if (!fallbackTried) {
    const answer = await attemptTier(resolveTarget(runtime, fallback), 'fallback');
    if (answer) {
      escalations++;
      if (fallbackTier !== null) tried.add(fallbackTier);
      if (await gated(answer)) return execution(answer, attempts, escalations, 'passed', speculated);
    }
  }

  // Nothing passed: the best-scoring answer, flagged as such, or none when the gate
  // refuses. On a tie the later answer wins: it came from a stronger tier (or the fallback).
  if (candidates.length > 0) {
    const best = candidates.reduce((a, b) => ((b.attempt.gate?.score ?? 0) >= (a.attempt.gate?.score ?? 0) ? b : a));
    if (gate.onFail === 'refuse')
      throw new TiergateError('TG_ERR_GATE_ANSWER_REFUSED', { route: route.name, answers: candidates.length, failed: failedChecks(best.attempt.gate!) });
    return execution(best, attempts, escalations, 'failed', speculated);
  }
  throw allFailed(attempts, lastError ?? new TiergateError('TG_ERR_UPSTREAM', { model: routed.model.spec.name, reason: 'no answer' }));
}
