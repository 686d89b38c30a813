// Record: the one decision line a request ends with, from what the pipeline knows of it
// (route, attempts, the answer served, how the response ended).
import type { Usage } from '../plugin-contract/plugin-api.ts';
import type { AttemptRecord, DecisionRecord, GateResult, ShadowRecord } from '../observe/decision-log.ts';
import type { Runtime } from '../policy/runtime.ts';
import type { Execution } from './execution-context.ts';
import type { ChatBody, RoutedRequest } from './route.ts';
import { costOf } from './usage.ts';

/** Sees every line of the decision log as it is written: decisions, and shadow comparisons (kind "shadow"). */
export type DecisionObserver = (line: DecisionRecord | ShadowRecord, runtime: Runtime) => void;

/** What the request ended with, for the decision line. */
export interface RequestOutcome {
  status: DecisionRecord['status'];
  attempts: AttemptRecord[];
  /** The answer served, when there was one. */
  served?: { model: string; tier: string | null; usage: Usage; usageEstimated: boolean; simulated: boolean; upstreamMs: number };
  totalCostUsd?: number;
  escalations?: number;
  gate?: DecisionRecord['gate'];
  qualityScore?: number | null;
  speculated?: boolean;
  errorCode?: string;
  /** The input checks' verdict, when the route has them. */
  inputCheck?: GateResult;
}

/** A complete answer, served. */
export function servedOutcome(executed: Execution): RequestOutcome {
  const { answer } = executed;
  return {
    status: 'ok',
    attempts: executed.attempts,
    served: {
      model: answer.model.spec.name,
      tier: answer.tier,
      usage: answer.usage,
      usageEstimated: answer.usageEstimated,
      simulated: answer.simulated,
      upstreamMs: answer.attempt.latency_ms,
    },
    totalCostUsd: executed.totalCostUsd,
    escalations: executed.escalations,
    gate: executed.gate,
    qualityScore: executed.qualityScore,
    speculated: executed.speculated,
  };
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

export function decisionLine(
  runtime: Runtime,
  requestId: string,
  started: number,
  body: ChatBody | null,
  routed: RoutedRequest | null,
  outcome: RequestOutcome,
): DecisionRecord {
  const served = outcome.served;
  const modelCost = served ? (outcome.totalCostUsd ?? null) : outcome.attempts.length ? outcome.attempts.reduce((sum, a) => sum + a.cost_usd, 0) : null;
  // An input check's own model calls (a judge) are spent whether or not a model answers.
  const checkCost = outcome.inputCheck?.cost_usd ?? 0;
  const cost = checkCost > 0 ? (modelCost ?? 0) + checkCost : modelCost;
  const best = routed && served ? costOf(routed.bestModel, served.usage) : null;
  const escalations = outcome.escalations ?? 0;
  const line: DecisionRecord = {
    request_id: requestId,
    timestamp: new Date().toISOString(),
    route: routed?.route?.name ?? null,
    request_features: routed?.features ?? {},
    routed_model: routed?.model.spec.name ?? null,
    routed_tier: routed?.tier ?? null,
    selected_model: served?.model ?? routed?.model.spec.name ?? null,
    tier: served ? served.tier : (routed?.tier ?? null),
    alternative_models: routed?.alternatives ?? [],
    // An escalation shows the router was wrong about this request: say so.
    confidence: routed?.confidence == null ? null : escalations > 0 ? routed.confidence * 0.5 ** escalations : routed.confidence,
    routing_reason: routed?.reason ?? 'not routed',
    latency_ms: round3(performance.now() - started),
    upstream_latency_ms: served ? round3(served.upstreamMs) : null,
    stream: body?.stream === true,
    usage: served?.usage ?? null,
    cost_usd: cost,
    best_model: routed?.bestModel.spec.name ?? null,
    best_cost_usd: best,
    cost_saved_usd: cost === null || best === null ? null : best - cost,
    policy_version: runtime.version,
    was_escalated: escalations > 0,
    escalations,
    gate: outcome.gate ?? 'none',
    quality_score: outcome.qualityScore ?? null,
    speculated: outcome.speculated ?? false,
    attempts: outcome.attempts.map((a) => ({
      ...a,
      started_ms: round3(a.started_ms),
      latency_ms: round3(a.latency_ms),
      ...(a.gate ? { gate: { ...a.gate, latency_ms: round3(a.gate.latency_ms) } } : {}),
    })),
    simulated: served?.simulated ?? false,
    status: outcome.status,
  };
  if (served?.usageEstimated) line.usage_estimated = true;
  if (outcome.errorCode) line.error_code = outcome.errorCode;
  if (outcome.inputCheck) line.input_check = { ...outcome.inputCheck, latency_ms: round3(outcome.inputCheck.latency_ms) };
  if (routed?.routingError) line.routing_error = routed.routingError;
  if (runtime.logPrompts && body) line.prompt = body.messages;
  return line;
}
