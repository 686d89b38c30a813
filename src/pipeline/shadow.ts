// Shadow evaluation: quality retention measured online with a real comparison. A
// route with `shadow: { sample }` sends a share of the requests it did NOT serve with
// its always-best model to that model as well, once the client has its answer. The
// route's gate scores the best model's answer like any other, and a `kind: "shadow"`
// line puts the two scores side by side in the decision log; `tiergate report` turns
// those lines into quality retention and a routing-accuracy estimate.
//
// Off the client's path, by construction:
// - it starts after the response has been ended, on a later turn of the event loop, and
//   the decision line (with the client's latency) is written before it starts;
// - its call has its own deadline (the best model's timeout) and no link to the
//   client's connection: a client that hangs up does not cut it short;
// - one try, no retries, no failover, and it does not count toward a model's cooldown:
//   an evaluation must never change what clients are served;
// - it holds the runtime (enter/leave), so a reload cannot dispose the plugins or close
//   the decision log under it; a shutdown waits for it.
// A failure is logged (warn) and written as a shadow line with status "error".
import type winston from 'winston';
import { errorMessage } from '../common/errors.ts';
import type { DecisionRecord, ShadowRecord } from '../observe/decision-log.ts';
import type { ChatBody, RoutedRequest } from './route.ts';
import type { RouteRuntime, Runtime } from '../policy/runtime.ts';
import { TiergateError } from '../common/errors.ts';
import type { AttemptRecord } from '../observe/decision-log.ts';
import { CallDeadline, ClientLink } from './cancellation.ts';
import type { ExecutionContext } from './execution-context.ts';
import { upstreamError } from './failover.ts';
import { runGate } from './gate.ts';
import { answerText, costOf } from './usage.ts';
import { estimatedUsage } from '../plugin-contract/tokens.ts';
import { upstreamBody } from './wire.ts';

/** Where the shadow line goes: the request's own decision log and observers. */
export interface ShadowPublisher {
  publish(line: ShadowRecord): void;
}

/** Eligible requests seen and shadowed, per route of one runtime (a reload starts afresh). */
const counters = new WeakMap<RouteRuntime, { eligible: number; shadowed: number }>();

/**
 * Deterministic, evenly spread sampling: of the first n eligible requests of a route,
 * ceil(n × sample) are shadowed. sample 1 shadows every one, 0.5 the 1st, 3rd, 5th …,
 * 0.25 the 1st, 5th, 9th …, 0 none. Tests and audits can predict which requests are
 * shadowed; a random draw would only match the share on average.
 */
function sampled(route: RouteRuntime, sample: number): boolean {
  let counter = counters.get(route);
  if (!counter) counters.set(route, (counter = { eligible: 0, shadowed: 0 }));
  counter.eligible++;
  // The epsilon keeps 3 × 0.1 = 0.30000000000000004 from rounding up to 1.
  if (counter.shadowed >= Math.ceil(counter.eligible * sample - 1e-9)) return false;
  counter.shadowed++;
  return true;
}

/**
 * A request is eligible when its route shadows, it was served (status ok) by a model
 * other than the route's always-best one, and the gate scored the served answer (when
 * every evaluator's `when` skips a request, there is nothing to compare).
 */
function eligible(route: RouteRuntime | null, line: DecisionRecord): route is RouteRuntime & { shadow: { sample: number } } {
  return (
    route !== null &&
    route.shadow !== null &&
    route.gate !== null &&
    line.status === 'ok' &&
    line.selected_model !== null &&
    line.selected_model !== route.bestModel &&
    line.quality_score !== null
  );
}

/**
 * Call once the response has been ended, before the decision line is written: when the
 * request is sampled, marks the line `shadowed: true` and schedules the shadow call.
 * Never throws and never waits.
 */
export function shadowAfterResponse(
  runtime: Runtime,
  routed: RoutedRequest | null,
  body: ChatBody | null,
  line: DecisionRecord,
  logger: winston.Logger,
  publisher: ShadowPublisher,
): void {
  try {
    const route = routed?.route ?? null;
    if (!routed || !body || !eligible(route, line) || !sampled(route, route.shadow.sample)) return;
    line.shadowed = true;
    runtime.enter();
    setImmediate(() => {
      runShadow(runtime, routed, body, line, logger, publisher)
        .catch((err: unknown) => logger.warn('shadow evaluation failed', { request_id: line.request_id, error: errorMessage(err) }))
        .finally(() => runtime.leave());
    });
  } catch (err) {
    logger.warn('shadow evaluation could not start', { request_id: line.request_id, error: errorMessage(err) });
  }
}

async function runShadow(
  runtime: Runtime,
  routed: RoutedRequest,
  body: ChatBody,
  line: DecisionRecord,
  logger: winston.Logger,
  publisher: ShadowPublisher,
): Promise<void> {
  const route = routed.route as RouteRuntime;
  const gate = route.gate!;
  const best = routed.bestModel;
  const bestTier = best.tier === null ? null : runtime.tiers[best.tier].name;
  const started = performance.now();
  // Never aborted: the shadow belongs to no client. The deadline is the model's timeout.
  const detached = new ClientLink();
  const deadline = new CallDeadline(best.spec.timeout_ms, detached);
  const ctx: ExecutionContext = { runtime, routed, body, client: detached, startedAt: started, attempts: [] };
  const base = {
    kind: 'shadow' as const,
    request_id: line.request_id,
    route: route.name,
    served_model: line.selected_model as string,
    served_tier: line.tier,
    served_quality: line.quality_score,
    best_model: best.spec.name,
    best_tier: bestTier,
  };
  let shadow: ShadowRecord;
  try {
    let result;
    try {
      result = await best.provider.complete(upstreamBody(ctx, best), deadline.callOptions(best.spec));
      if (!result || !Array.isArray(result.choices) || result.choices.length === 0)
        throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: best.spec.name, reason: 'the reply has no choices' });
    } catch (err) {
      throw upstreamError(err, best, deadline);
    } finally {
      deadline.clear();
    }
    const usage = result.usage ?? estimatedUsage(body.messages, answerText(result));
    const callCost = costOf(best, usage);
    const simulated = (result as { simulated?: boolean }).simulated === true;
    // The attempt is the Answer's bookkeeping only; it is not logged anywhere.
    const attempt: AttemptRecord = {
      model: best.spec.name,
      tier: bestTier,
      role: 'routed',
      started_ms: 0,
      latency_ms: performance.now() - started,
      outcome: 'ok',
      retries: 0,
      usage,
      cost_usd: callCost,
    };
    const gated = await runGate(ctx, gate, { model: best, tier: bestTier, result, usage, usageEstimated: !result.usage, simulated, attempt });
    shadow = {
      ...base,
      best_quality: gated.score,
      best_passed: gated.passed,
      shadow_cost_usd: callCost + gated.cost_usd,
      latency_ms: round3(performance.now() - started),
      simulated,
      status: 'ok',
      policy_version: runtime.version,
      timestamp: new Date().toISOString(),
    };
  } catch (err) {
    const error = err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err });
    logger.warn('shadow call to the always-best model failed; the client was not affected', {
      request_id: line.request_id,
      route: route.name,
      model: best.spec.name,
      code: error.code,
      error: error.message,
    });
    shadow = {
      ...base,
      best_quality: null,
      best_passed: null,
      shadow_cost_usd: null,
      latency_ms: round3(performance.now() - started),
      simulated: false,
      status: 'error',
      error_code: error.code,
      error: error.message,
      policy_version: runtime.version,
      timestamp: new Date().toISOString(),
    };
  }
  publisher.publish(shadow);
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;
