// Record: the one decision line a request ends with, from what the pipeline knows of it
// (route, attempts, the answer served, how the response ended).
import type winston from 'winston';
import { errorMessage } from '../common/errors.ts';
import type { Usage } from '../plugin-contract/plugin-api.ts';
import type { AttemptRecord, DecisionRecord, GateResult, ShadowRecord } from '../observe/decision-log.ts';
import type { Runtime } from '../policy/runtime.ts';
import type { Execution } from './execution-context.ts';
import type { ChatBody, RoutedRequest } from './route.ts';
import { cachedInputTokens, cacheWriteInputTokens, reasoningTokens } from '../plugin-contract/usage-details.ts';
import { costOf } from './usage.ts';

/** Sees every line of the decision log as it is written: decisions, and shadow comparisons (kind "shadow"). */
export type DecisionObserver = (line: DecisionRecord | ShadowRecord, runtime: Runtime) => void;

/** Where a line goes once written: the gateway's observers, and its logger for an observer that fails. */
export interface LineAudience {
  readonly logger: winston.Logger;
  readonly observers: ReadonlySet<DecisionObserver>;
}

/**
 * Writes a line of the decision log and shows it to the observers (metrics, the
 * dashboard, learning, spend limits), with the caller's key name on a decision line:
 * the one way a line is published, whichever API the request came through.
 */
export function publishLine(runtime: Runtime, audience: LineAudience, callerName: string | undefined, line: DecisionRecord | ShadowRecord): void {
  if (callerName !== undefined && !('kind' in line)) line.api_key_name = callerName;
  try {
    runtime.decisionLog?.write(line);
  } catch (err) {
    // The observers below still count the request (metrics, spend): a log that failed must not make it free.
    audience.logger.error('a decision line could not be written', { request_id: line.request_id, error: errorMessage(err) });
  }
  for (const observe of audience.observers) {
    try {
      observe(line, runtime);
    } catch (err) {
      audience.logger.warn('a decision observer failed', { error: errorMessage(err) });
    }
  }
}

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

export const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

export function decisionLine(
  runtime: Runtime,
  requestId: string,
  started: number,
  body: ChatBody | null,
  routed: RoutedRequest | null,
  outcome: RequestOutcome,
  /** The verdict of the route's input checks, when it has them. Apart from `outcome`, which is read as built: a copy made to add it had a new hidden class per request, and every read of it missed its inline cache (profile-findings, item 29). */
  inputCheck?: GateResult,
): DecisionRecord {
  const served = outcome.served;
  const modelCost = served ? (outcome.totalCostUsd ?? null) : outcome.attempts.length ? outcome.attempts.reduce((sum, a) => sum + a.cost_usd, 0) : null;
  // An input check's own model calls (a judge) are spent whether or not a model answers.
  const checkCost = inputCheck?.cost_usd ?? 0;
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
  if (served) Object.assign(line, pricedTokenParts(served.usage));
  if (outcome.errorCode) line.error_code = outcome.errorCode;
  if (inputCheck) line.input_check = { ...inputCheck, latency_ms: round3(inputCheck.latency_ms) };
  if (routed?.routingError) line.routing_error = routed.routingError;
  if (runtime.logPrompts && body) line.prompt = body.messages;
  return line;
}

/** The served answer's tokens that are priced apart from plain input and output, for the decision line (only those it has). */
function pricedTokenParts(usage: Usage): Pick<DecisionRecord, 'cached_input_tokens' | 'cache_write_input_tokens' | 'reasoning_tokens'> {
  const parts: Pick<DecisionRecord, 'cached_input_tokens' | 'cache_write_input_tokens' | 'reasoning_tokens'> = {};
  const cached = cachedInputTokens(usage);
  if (cached > 0) parts.cached_input_tokens = cached;
  const cacheWrite = cacheWriteInputTokens(usage);
  if (cacheWrite > 0) parts.cache_write_input_tokens = cacheWrite;
  const reasoning = reasoningTokens(usage);
  if (reasoning > 0) parts.reasoning_tokens = reasoning;
  return parts;
}
