// In-tier failover: the models of a target in order; each retried on 429 / 5xx /
// timeouts / connection errors with exponential backoff and jitter (honouring
// retry-after), skipped while in cooldown after repeated failures. Every model call is
// recorded as an attempt, with its cost, for the decision log. Whose fault a failure
// was is decided once, by causedByUpstream: only the upstream's count against a model.
import { TiergateError, errorMessage } from '../common/errors.ts';
import { isUpstreamError } from '../plugin-contract/plugin-api.ts';
import type { AttemptRecord, AttemptRole } from '../observe/decision-log.ts';
import type { ModelRuntime } from '../policy/runtime.ts';
import { modelsFrom, resolveTarget, tierName } from '../policy/targets.ts';
import { CallDeadline, ClientGone, abortableSleep } from './cancellation.ts';
import type { Answer, ExecutionContext } from './execution-context.ts';
import { answerText, costOf } from './usage.ts';
import { estimatedUsage } from '../plugin-contract/tokens.ts';
import { upstreamBody } from './wire.ts';

/**
 * Turns whatever a provider threw into a catalogue error. The plugin contract has a
 * provider report an upstream's failure as an UpstreamError; anything else it throws
 * never came from the upstream: the provider could not make the call, because the
 * request could not be serialized or translated for this model. That is the request's
 * fault (TG_ERR_REQUEST_UNSENDABLE, a 400), not the model's.
 */
export function upstreamError(err: unknown, model: ModelRuntime, deadline: CallDeadline): TiergateError {
  const name = model.spec.name;
  if (deadline.timedOut) return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
  if (err instanceof TiergateError) return err;
  if (!isUpstreamError(err)) return new TiergateError('TG_ERR_REQUEST_UNSENDABLE', { model: name, reason: errorMessage(err) }, { cause: err });
  switch (err.failure) {
    case 'timeout':
      return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
    case 'reply':
      return new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: name, reason: err.message }, { cause: err });
    case 'http':
      if (err.status === 429) return new TiergateError('TG_ERR_UPSTREAM_RATE_LIMITED', { model: name, reason: err.message }, { cause: err });
      // The upstream judged the request itself bad: the client can fix that, so say so.
      if (err.status === 400 || err.status === 404 || err.status === 413 || err.status === 422)
        return new TiergateError('TG_ERR_UPSTREAM_REJECTED', { model: name, status: err.status, reason: err.message }, { cause: err });
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
    default:
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
  }
}

/**
 * The one rule for what counts against a model: a failure the upstream caused (it
 * answered 5xx or 429, did not answer in time, broke the connection, sent a reply that
 * cannot be read) is retried, fails over to the next model and feeds the model's health
 * (cooldowns). Any other failure is the request's own (the upstream rejected it as
 * invalid, it could not be sent, the gateway refused it): the client's to fix, answered
 * at once, and no client can put a model into cooldown for everyone with it.
 */
export function causedByUpstream(error: TiergateError): boolean {
  return (
    error.code === 'TG_ERR_UPSTREAM' ||
    error.code === 'TG_ERR_UPSTREAM_TIMEOUT' ||
    error.code === 'TG_ERR_UPSTREAM_RATE_LIMITED' ||
    error.code === 'TG_ERR_UPSTREAM_REPLY'
  );
}

function retryAfterOf(error: TiergateError): number | undefined {
  return isUpstreamError(error.cause) ? error.cause.retryAfterMs : undefined;
}

/** Every model of the tier failed: the attempts say how. */
export class TierFailure extends Error {
  constructor(readonly lastError: TiergateError) {
    super(lastError.message);
    this.name = 'TierFailure';
  }
}

function backoffDelay(retry: number, base: number): number {
  // Exponential with "equal jitter": half fixed, half random, so retries of many
  // requests that failed together do not arrive together.
  const exponential = base * 2 ** retry;
  return exponential / 2 + Math.random() * (exponential / 2);
}

/**
 * What failover reads of a request: its runtime, client and attempts, and the prompt (a
 * call that loses a race is billed for it). Any request that calls models has these, a
 * chat request's ExecutionContext or an embeddings request's.
 */
export type FailoverContext = Pick<ExecutionContext, 'runtime' | 'attempts' | 'client' | 'startedAt'> & {
  readonly body: Pick<ExecutionContext['body'], 'messages'>;
};

/** One call to one model; resolves once the model has answered (or started to stream). */
export type ModelCall<T> = (model: ModelRuntime, deadline: CallDeadline, record: AttemptRecord) => Promise<T>;

/**
 * Tries the models in order until one answers: retries with backoff on retryable
 * failures, fails over to the next model, skips models in cooldown (unless all are).
 * Rejects with TierFailure (every model failed), ClientGone, or a non-retryable
 * TiergateError (the request itself was rejected). `keepDeadline` leaves the winning
 * call's deadline running, for a stream that is still being read.
 */
export async function failover<T>(
  ctx: FailoverContext,
  models: readonly ModelRuntime[],
  role: AttemptRole,
  race: AbortSignal | null,
  call: ModelCall<T>,
  keepDeadline = false,
): Promise<T> {
  const { runtime, attempts } = ctx;
  const { resilience, health } = runtime;
  const available = models.filter((m) => !health.coolingDown(m.spec.name));
  const candidates = available.length > 0 ? available : models;
  for (const skipped of models.filter((m) => !candidates.includes(m))) {
    attempts.push({
      model: skipped.spec.name,
      tier: tierName(runtime, skipped.tier),
      role,
      started_ms: performance.now() - ctx.startedAt,
      latency_ms: 0,
      outcome: 'skipped_cooldown',
      retries: 0,
      cost_usd: 0,
    });
  }
  let lastError: TiergateError | null = null;
  for (const model of candidates) {
    const started = performance.now();
    const record: AttemptRecord = {
      model: model.spec.name,
      tier: tierName(runtime, model.tier),
      role,
      started_ms: started - ctx.startedAt,
      latency_ms: 0,
      outcome: 'failed',
      retries: 0,
      cost_usd: 0,
    };
    attempts.push(record);
    for (let retry = 0; ; retry++) {
      record.retries = retry;
      const deadline = new CallDeadline(model.spec.timeout_ms, ctx.client, race);
      let succeeded = false;
      try {
        const value = await call(model, deadline, record);
        succeeded = true;
        health.success(model.spec.name);
        record.outcome = 'ok';
        record.latency_ms = performance.now() - started;
        delete record.error;
        delete record.error_code;
        return value;
      } catch (err) {
        if (ctx.client.aborted || race?.aborted) {
          // The call was cut short: the client went away (or the gateway stopped it), or
          // it lost a speculation race. The provider bills the prompt it was sent, so
          // count it, and charge it to the key; the answer's tokens are unknown.
          const usage = estimatedUsage(ctx.body.messages, '');
          Object.assign(record, { outcome: 'aborted', latency_ms: performance.now() - started, usage, usage_estimated: true, cost_usd: costOf(model, usage) });
          if (ctx.client.aborted) throw new ClientGone();
          throw race?.reason ?? err;
        }
        const error = upstreamError(err, model, deadline);
        Object.assign(record, { latency_ms: performance.now() - started, error_code: error.code, error: error.message });
        if (!causedByUpstream(error)) throw error;
        health.failure(model.spec.name, resilience);
        lastError = error;
        const retryAfter = retryAfterOf(error);
        if (retry >= resilience.retries || (retryAfter !== undefined && retryAfter > resilience.max_backoff_ms) || health.coolingDown(model.spec.name)) break;
        await abortableSleep(
          Math.min(resilience.max_backoff_ms, Math.max(retryAfter ?? 0, backoffDelay(retry, resilience.backoff_ms))),
          race ?? ctx.client.signal,
        ).catch(() => undefined);
        if (ctx.client.aborted) throw new ClientGone();
      } finally {
        if (!(succeeded && keepDeadline)) deadline.clear();
      }
    }
  }
  throw new TierFailure(lastError ?? new TiergateError('TG_ERR_UPSTREAM', { model: models.map((m) => m.spec.name).join(', '), reason: 'no model to call' }));
}

/**
 * A complete (non-streamed) answer from the first of the models that gives one. `race`
 * aborts this call (a speculative call the cheap answer made unnecessary); the client
 * going away always does.
 */
export function callModels(ctx: ExecutionContext, models: readonly ModelRuntime[], role: AttemptRole, race: AbortSignal | null = null): Promise<Answer> {
  return failover(ctx, models, role, race, async (model, deadline, record) => {
    const result = await model.provider.complete(upstreamBody(ctx, model), deadline.callOptions(model.spec));
    if (!result || !Array.isArray(result.choices) || result.choices.length === 0)
      throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: model.spec.name, reason: 'the reply has no choices' });
    const usage = result.usage ?? estimatedUsage(ctx.body.messages, answerText(result));
    record.usage = usage;
    record.cost_usd = costOf(model, usage);
    if (!result.usage) record.usage_estimated = true;
    return {
      model,
      tier: record.tier,
      result,
      usage,
      usageEstimated: !result.usage,
      simulated: (result as { simulated?: boolean }).simulated === true,
      attempt: record,
    };
  });
}

/**
 * Calls the routed models and, when every one of them fails, the route's fallback (those
 * of its models not tried yet): before anything has reached the client, so a route that
 * names a last resort gets it whatever its mode. The gated ladder reaches the fallback
 * its own way (execute.ts); this is the way for a request that does not climb one: no
 * gate, or a stream that bypasses it.
 */
export async function routedOrFallback<T>(ctx: ExecutionContext, call: (models: readonly ModelRuntime[], role: AttemptRole) => Promise<T>): Promise<T> {
  const routedModels = modelsFrom(ctx.runtime, ctx.routed.model);
  try {
    return await call(routedModels, 'routed');
  } catch (err) {
    const fallback = ctx.routed.route?.fallback;
    if (!(err instanceof TierFailure) || !fallback) throw err;
    const untried = resolveTarget(ctx.runtime, fallback).filter((m) => !routedModels.includes(m));
    if (untried.length === 0) throw err;
    return call(untried, 'fallback');
  }
}

/** The 502 when nothing answered, listing what was tried. */
export function allFailed(attempts: AttemptRecord[], last: TiergateError): TiergateError {
  const tried = attempts.filter((a) => a.outcome !== 'ok');
  const listed = tried.map((a) => ({ model: a.model, tier: a.tier, outcome: a.outcome, error_code: a.error_code, error: a.error, retries: a.retries }));
  // One model tried (perhaps several times): its own error says most (a 429 with
  // retry-after to back off on, a 504), so pass it on with the attempts attached.
  if (new Set(tried.map((a) => a.model)).size <= 1) return Object.assign(last, { attempts: listed });
  const summary = tried
    .map(
      (a) =>
        `${a.model} (${a.outcome === 'skipped_cooldown' ? 'in cooldown' : (a.error_code ?? a.outcome)}${a.retries ? `, ${a.retries} retr${a.retries === 1 ? 'y' : 'ies'}` : ''})`,
    )
    .join('; ');
  return Object.assign(new TiergateError('TG_ERR_ALL_FAILED', { summary }, { cause: last.cause ?? last }), { attempts: listed });
}
