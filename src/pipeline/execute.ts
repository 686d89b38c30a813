// The executor: from a routing decision to the answer the client gets.
//
//   tier call   the tier's models in order; each retried on 429 / 5xx / timeouts /
//               connection errors with exponential backoff and jitter (honouring
//               retry-after), skipped while in cooldown after repeated failures
//   gate        the route's evaluators score the answer; below the threshold the
//               request climbs the ladder (at most max_escalations), then the fallback
//   speculate   when the decision is unsure, the routed tier and the next one are
//               called at once; the strong call is aborted if the cheap answer passes
//
// Every model call is recorded as an attempt, with its cost, for the decision log.
import { TiergateError, errorMessage } from '../common/errors.ts';
import { isTruthy } from '../expressions/compile.ts';
import { EventEmitter } from 'node:events';
import { isUpstreamError, type CallOptions, type CancellationEvents, type ChatChunk, type ChatRequest, type ChatResult, type EvalInput, type ModelSpec, type Usage } from '../plugin-sdk/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, messageText } from '../plugin-sdk/tokens.ts';
import type { ChatBody, RoutedRequest } from './route.ts';
import type { Gate, ModelRuntime, Runtime, Target } from '../policy/runtime.ts';

export type AttemptRole = 'routed' | 'escalation' | 'fallback' | 'speculative';

export interface EvaluatorResult {
  name: string;
  score: number | null;
  weight: number;
  threshold: number | null;
  skipped?: boolean;
  error?: string;
  details?: Record<string, unknown>;
}

export interface GateResult {
  score: number | null;
  passed: boolean;
  threshold: number;
  evaluators: EvaluatorResult[];
  /** What the evaluators' own model calls (an LLM judge) cost. */
  cost_usd: number;
  latency_ms: number;
}

export interface AttemptRecord {
  model: string;
  tier: string | null;
  role: AttemptRole;
  /** Milliseconds after the request arrived. */
  started_ms: number;
  latency_ms: number;
  outcome: 'ok' | 'failed' | 'aborted' | 'skipped_cooldown';
  retries: number;
  error_code?: string;
  error?: string;
  usage?: Usage;
  usage_estimated?: boolean;
  cost_usd: number;
  gate?: GateResult;
}

export interface Answer {
  model: ModelRuntime;
  tier: string | null;
  result: ChatResult;
  usage: Usage;
  usageEstimated: boolean;
  simulated: boolean;
  attempt: AttemptRecord;
}

export interface Execution {
  answer: Answer;
  attempts: AttemptRecord[];
  /** Tier climbs after a failed gate (or a tier that failed outright). */
  escalations: number;
  gate: 'passed' | 'failed' | 'none';
  qualityScore: number | null;
  totalCostUsd: number;
  speculated: boolean;
}

/** CallOptions.cancellation: an emitter that emits 'abort' once, as undici expects of one. */
class Cancellation extends EventEmitter implements CancellationEvents {
  aborted = false;
  reason: unknown = undefined;
}

/**
 * One cancellation, seen as an AbortSignal or as an emitter, each made only when someone
 * asks for it (and already aborted when the cancellation came first).
 */
class LazyAbort {
  private controller: AbortController | null = null;
  private emitter: Cancellation | null = null;
  fired = false;
  reason: unknown = undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.fired) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  get events(): CancellationEvents {
    if (!this.emitter) {
      this.emitter = new Cancellation();
      this.emitter.aborted = this.fired;
      this.emitter.reason = this.reason;
    }
    return this.emitter;
  }

  /** False when it had fired already (the first reason stands). */
  fire(reason: unknown): boolean {
    if (this.fired) return false;
    this.fired = true;
    this.reason = reason;
    this.controller?.abort(reason);
    if (this.emitter) {
      this.emitter.aborted = true;
      this.emitter.reason = reason;
      this.emitter.emit('abort');
    }
    return true;
  }
}

/**
 * The client's side of one request: whether it went away, and the upstream calls to stop
 * when it does. An AbortSignal for it is made only when something asks (a gate's
 * evaluator, a stream waiting for the socket to drain, speculation, a backoff sleep):
 * the common request links its call's deadline here directly. Making an AbortSignal and
 * listening on it costs about as much as routing the request (on Node 20: the signal's
 * EventTarget set-up, then add/removeEventListener), and every request used to make two
 * (docs/bench/profile-findings.md, round 4).
 */
export class ClientLink {
  private readonly state = new LazyAbort();
  private deadlines: CallDeadline[] | null = null;
  private unfollow: (() => void) | null = null;

  /** A link that follows `signal` (a caller's own signal, as `tiergate eval` passes) until release(). */
  static following(signal: AbortSignal): ClientLink {
    const link = new ClientLink();
    if (signal.aborted) {
      link.abort(signal.reason);
      return link;
    }
    const onAbort = () => link.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    link.unfollow = () => signal.removeEventListener('abort', onAbort);
    return link;
  }

  /** Stops following the signal given to following(): the request is over. */
  release(): void {
    this.unfollow?.();
    this.unfollow = null;
  }

  get aborted(): boolean {
    return this.state.fired;
  }

  get reason(): unknown {
    return this.state.reason;
  }

  /** Aborted when the client goes away (with the link's reason). Made on first use. */
  get signal(): AbortSignal {
    return this.state.signal;
  }

  /** The client went away: the signal and every linked call are aborted. Idempotent. */
  abort(reason: unknown): void {
    if (!this.state.fire(reason)) return;
    const deadlines = this.deadlines;
    this.deadlines = null;
    if (deadlines) for (const deadline of deadlines) deadline.cancel(reason);
  }

  /** @internal CallDeadline's: aborted with the client from now on. */
  link(deadline: CallDeadline): void {
    if (this.state.fired) return deadline.cancel(this.state.reason);
    (this.deadlines ??= []).push(deadline);
  }

  /** @internal */
  unlink(deadline: CallDeadline): void {
    const deadlines = this.deadlines;
    if (!deadlines) return;
    const at = deadlines.indexOf(deadline);
    if (at >= 0) deadlines.splice(at, 1);
  }
}

/** Per-request state the executor shares between calls. */
export interface ExecutionContext {
  runtime: Runtime;
  routed: RoutedRequest;
  body: ChatBody;
  /** Aborted when the client goes away. */
  client: ClientLink;
  /** performance.now() when the request arrived. */
  startedAt: number;
  /** Every model call of the request, in the order started (filled even when it fails). */
  attempts: AttemptRecord[];
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

export function costOf(model: ModelRuntime, usage: Usage): number {
  return (usage.prompt_tokens * model.spec.price.input_per_mtok + usage.completion_tokens * model.spec.price.output_per_mtok) / 1e6;
}

export function estimatedUsage(body: ChatBody, completionText: string): Usage {
  const prompt = estimateMessagesTokens(body.messages);
  const completion = estimateTextTokens(completionText);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function answerText(result: ChatResult): string {
  return result.choices.map((c) => messageText(c.message?.content ?? '')).join('');
}

export function upstreamBody(ctx: ExecutionContext, model: ModelRuntime): ChatRequest {
  const { body } = ctx;
  const out: ChatRequest = { model: model.spec.upstream, messages: body.messages };
  // metadata is tiergate's routing input; OpenAI rejects it unless `store` is set.
  for (const key in body) if (key !== 'model' && key !== 'messages' && key !== 'metadata' && key !== 'stream' && key !== 'stream_options') out[key] = body[key];
  const extra = ctx.routed.route?.upstreamParameters;
  if (extra) for (const key in extra) if (!(key in out)) out[key] = extra[key];
  return out;
}

/**
 * A deadline for one upstream call, also cancelled by the request's client going away
 * and, for a call that can lose a race (speculation), by `race`. Neither its AbortSignal
 * nor its emitter exists until the provider asks for one (CallOptions).
 */
export class CallDeadline {
  timedOut = false;
  private readonly state = new LazyAbort();
  private readonly timer: NodeJS.Timeout;
  private readonly onRaceLost: (() => void) | null = null;

  constructor(
    readonly timeoutMs: number,
    private readonly client: ClientLink,
    private readonly race: AbortSignal | null = null,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.cancel(new Error('upstream timeout'));
    }, timeoutMs);
    client.link(this);
    if (race) {
      const onRaceLost = () => this.cancel(race.reason);
      this.onRaceLost = onRaceLost;
      if (race.aborted) onRaceLost();
      else race.addEventListener('abort', onRaceLost, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.state.signal;
  }

  get cancellation(): CancellationEvents {
    return this.state.events;
  }

  /** What the provider is called with: the signal and the emitter are made when it reads them. */
  callOptions(model: ModelSpec): CallOptions {
    return new DeadlineCall(model, this);
  }

  /** Aborts the call (the client left, the race was lost, the time ran out). Idempotent. */
  cancel(reason: unknown): void {
    this.state.fire(reason);
  }

  /** A streamed chunk arrived: the timeout now measures the gap to the next one. */
  refresh(): void {
    this.timer.refresh();
  }

  clear(): void {
    clearTimeout(this.timer);
    this.client.unlink(this);
    if (this.race && this.onRaceLost) this.race.removeEventListener('abort', this.onRaceLost);
  }
}

class DeadlineCall implements CallOptions {
  constructor(
    readonly model: ModelSpec,
    private readonly deadline: CallDeadline,
  ) {}

  get signal(): AbortSignal {
    return this.deadline.signal;
  }

  get cancellation(): CancellationEvents {
    return this.deadline.cancellation;
  }
}

/** Turns whatever a provider threw into a catalogue error. */
export function upstreamError(err: unknown, model: ModelRuntime, deadline: CallDeadline): TiergateError {
  const name = model.spec.name;
  if (deadline.timedOut) return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
  if (err instanceof TiergateError) return err;
  if (!isUpstreamError(err)) return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: errorMessage(err) }, { cause: err });
  switch (err.failure) {
    case 'timeout':
      return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
    case 'reply':
      return new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: name, reason: err.message }, { cause: err });
    case 'http':
      if (err.status === 429) return new TiergateError('TG_ERR_UPSTREAM_RATE_LIMITED', { model: name, reason: err.message }, { cause: err });
      // The upstream judged the request itself bad: the client can fix that, so say so.
      if (err.status === 400 || err.status === 404 || err.status === 413 || err.status === 422) return new TiergateError('TG_ERR_UPSTREAM_REJECTED', { model: name, status: err.status, reason: err.message }, { cause: err });
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
    default:
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
  }
}

/** Worth trying again (same model after a pause, or the next model)? */
export function isRetryable(error: TiergateError): boolean {
  return error.code === 'TG_ERR_UPSTREAM' || error.code === 'TG_ERR_UPSTREAM_TIMEOUT' || error.code === 'TG_ERR_UPSTREAM_RATE_LIMITED' || error.code === 'TG_ERR_UPSTREAM_REPLY';
}

function retryAfterOf(error: TiergateError): number | undefined {
  return isUpstreamError(error.cause) ? error.cause.retryAfterMs : undefined;
}

/** The request's own client went away: stop everything, answer no one. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
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

/** The models to try for a target, in order: the chosen one, then its tier-mates. */
export function modelsFor(runtime: Runtime, target: Target, first?: ModelRuntime): ModelRuntime[] {
  const names = target.kind === 'tier' ? runtime.tiers[target.tier].models : [target.model, ...(runtime.models.get(target.model)?.tier != null ? runtime.tiers[runtime.models.get(target.model)!.tier!].models : [])];
  const ordered = first ? [first.spec.name, ...names] : [...names];
  return [...new Set(ordered)].map((n) => runtime.models.get(n) as ModelRuntime);
}

function tierName(runtime: Runtime, model: ModelRuntime): string | null {
  return model.tier === null ? null : runtime.tiers[model.tier].name;
}

/** One call to one model; resolves once the model has answered (or started to stream). */
type ModelCall<T> = (model: ModelRuntime, deadline: CallDeadline, record: AttemptRecord) => Promise<T>;

/**
 * Tries the models in order until one answers: retries with backoff on retryable
 * failures, fails over to the next model, skips models in cooldown (unless all are).
 * Rejects with TierFailure (every model failed), ClientGone, or a non-retryable
 * TiergateError (the request itself was rejected). `keepDeadline` leaves the winning
 * call's deadline running, for a stream that is still being read.
 */
async function failover<T>(ctx: ExecutionContext, models: ModelRuntime[], role: AttemptRole, race: AbortSignal | null, call: ModelCall<T>, keepDeadline = false): Promise<T> {
  const { runtime, attempts } = ctx;
  const { resilience, health } = runtime;
  const available = models.filter((m) => !health.coolingDown(m.spec.name));
  const candidates = available.length > 0 ? available : models;
  for (const skipped of models.filter((m) => !candidates.includes(m))) {
    attempts.push({ model: skipped.spec.name, tier: tierName(runtime, skipped), role, started_ms: performance.now() - ctx.startedAt, latency_ms: 0, outcome: 'skipped_cooldown', retries: 0, cost_usd: 0 });
  }
  let lastError: TiergateError | null = null;
  for (const model of candidates) {
    const started = performance.now();
    const record: AttemptRecord = { model: model.spec.name, tier: tierName(runtime, model), role, started_ms: started - ctx.startedAt, latency_ms: 0, outcome: 'failed', retries: 0, cost_usd: 0 };
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
        if (ctx.client.aborted) {
          Object.assign(record, { outcome: 'aborted', latency_ms: performance.now() - started });
          throw new ClientGone();
        }
        if (race?.aborted) {
          // This call lost a race (speculation): it was cut short on purpose. The
          // provider bills the prompt, so count it; the answer's tokens are unknown.
          const usage = estimatedUsage(ctx.body, '');
          Object.assign(record, { outcome: 'aborted', latency_ms: performance.now() - started, usage, usage_estimated: true, cost_usd: costOf(model, usage) });
          throw race.reason ?? err;
        }
        const error = upstreamError(err, model, deadline);
        Object.assign(record, { latency_ms: performance.now() - started, error_code: error.code, error: error.message });
        if (!isRetryable(error)) throw error;
        health.failure(model.spec.name, resilience);
        lastError = error;
        const retryAfter = retryAfterOf(error);
        if (retry >= resilience.retries || (retryAfter !== undefined && retryAfter > resilience.max_backoff_ms) || health.coolingDown(model.spec.name)) break;
        await sleep(Math.min(resilience.max_backoff_ms, Math.max(retryAfter ?? 0, backoffDelay(retry, resilience.backoff_ms))), race ?? ctx.client.signal).catch(() => undefined);
        if (ctx.client.aborted) throw new ClientGone();
      } finally {
        if (!(succeeded && keepDeadline)) deadline.clear();
      }
    }
  }
  throw new TierFailure(lastError ?? new TiergateError('TG_ERR_UPSTREAM', { model: models.map((m) => m.spec.name).join(', '), reason: 'no model to call' }));
}

/** A complete (non-streamed) answer from the first of the models that gives one. */
/** `race`: aborts this call (a speculative call the cheap answer made unnecessary); the client going away always does. */
export function callModels(ctx: ExecutionContext, models: ModelRuntime[], role: AttemptRole, race: AbortSignal | null = null): Promise<Answer> {
  return failover(ctx, models, role, race, async (model, deadline, record) => {
    const result = await model.provider.complete(upstreamBody(ctx, model), deadline.callOptions(model.spec));
    if (!result || !Array.isArray(result.choices) || result.choices.length === 0) throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: model.spec.name, reason: 'the reply has no choices' });
    const usage = result.usage ?? estimatedUsage(ctx.body, answerText(result));
    record.usage = usage;
    record.cost_usd = costOf(model, usage);
    if (!result.usage) record.usage_estimated = true;
    return { model, tier: record.tier, result, usage, usageEstimated: !result.usage, simulated: (result as { simulated?: boolean }).simulated === true, attempt: record };
  });
}

export interface OpenStream {
  model: ModelRuntime;
  /** The first chunk, already read: nothing reaches the client before it exists. */
  first: ChatChunk & { simulated?: boolean };
  iterator: AsyncIterator<ChatChunk & { simulated?: boolean }>;
  /** Still running: refresh it per chunk, clear it at the end. */
  deadline: CallDeadline;
  attempt: AttemptRecord;
}

/** Opens a stream on the first model that sends a first chunk: failover happens before the first byte. */
export function openStream(ctx: ExecutionContext, models: ModelRuntime[]): Promise<OpenStream> {
  return failover(
    ctx,
    models,
    'routed',
    null,
    async (model, deadline, record) => {
      const iterator = model.provider.stream(upstreamBody(ctx, model), deadline.callOptions(model.spec))[Symbol.asyncIterator]();
      try {
        const first = await iterator.next();
        if (first.done) throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: model.spec.name, reason: 'the stream ended before its first chunk' });
        deadline.refresh();
        return { model, first: first.value, iterator, deadline, attempt: record };
      } catch (err) {
        void iterator.return?.(undefined)?.catch(() => undefined);
        throw err;
      }
    },
    true,
  );
}

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

function targetTierIndex(runtime: Runtime, target: Target): number | null {
  if (target.kind === 'tier') return target.tier;
  return runtime.models.get(target.model)?.tier ?? null;
}

function execution(answer: Answer, attempts: AttemptRecord[], escalations: number, gate: Execution['gate'], speculated: boolean): Execution {
  const totalCostUsd = attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0);
  return { answer, attempts, escalations, gate, qualityScore: answer.attempt.gate?.score ?? null, totalCostUsd, speculated };
}

/** The 502 when nothing answered, listing what was tried. */
export function allFailed(attempts: AttemptRecord[], last: TiergateError): TiergateError {
  const tried = attempts.filter((a) => a.outcome !== 'ok');
  const listed = tried.map((a) => ({ model: a.model, tier: a.tier, outcome: a.outcome, error_code: a.error_code, error: a.error, retries: a.retries }));
  // One model tried (perhaps several times): its own error says most (a 429 with
  // retry-after to back off on, a 504), so pass it on with the attempts attached.
  if (new Set(tried.map((a) => a.model)).size <= 1) return Object.assign(last, { attempts: listed });
  const summary = tried.map((a) => `${a.model} (${a.outcome === 'skipped_cooldown' ? 'in cooldown' : (a.error_code ?? a.outcome)}${a.retries ? `, ${a.retries} retr${a.retries === 1 ? 'y' : 'ies'}` : ''})`).join('; ');
  return Object.assign(new TiergateError('TG_ERR_ALL_FAILED', { summary }, { cause: last.cause ?? last }), { attempts: listed });
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
  const firstModels = modelsFor(runtime, routed.model.tier === null ? { kind: 'model', model: routed.model.spec.name } : { kind: 'tier', tier: routed.model.tier }, routed.model);

  if (!gate) {
    try {
      const answer = await callModels(ctx, firstModels, 'routed');
      return execution(answer, attempts, 0, 'none', false);
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
  const attemptTier = async (models: ModelRuntime[], role: AttemptRole): Promise<Answer | null> => {
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
    const strong = callModels(ctx, modelsFor(runtime, { kind: 'tier', tier: strongTier }), 'speculative', strongAbort.signal).then(
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
    const answer = await attemptTier(modelsFor(runtime, { kind: 'tier', tier }), 'escalation');
    if (answer && (await gated(answer))) return execution(answer, attempts, escalations, 'passed', speculated);
  }

  // Step 3: the route's fallback, unless the ladder already tried it.
  const fallbackTier = targetTierIndex(runtime, route.fallback);
  const fallbackTried = route.fallback.kind === 'tier' ? tried.has(route.fallback.tier) : attempts.some((a) => a.model === (route.fallback as { model: string }).model);
  if (!fallbackTried) {
    const answer = await attemptTier(modelsFor(runtime, route.fallback), 'fallback');
    if (answer) {
      escalations++;
      if (fallbackTier !== null) tried.add(fallbackTier);
      if (await gated(answer)) return execution(answer, attempts, escalations, 'passed', speculated);
    }
  }

  // Nothing passed: the best-scoring answer, flagged as such. On a tie the later
  // answer wins: it came from a stronger tier (or the fallback).
  if (candidates.length > 0) {
    const best = candidates.reduce((a, b) => ((b.attempt.gate?.score ?? 0) >= (a.attempt.gate?.score ?? 0) ? b : a));
    return execution(best, attempts, escalations, 'failed', speculated);
  }
  throw allFailed(attempts, lastError ?? new TiergateError('TG_ERR_UPSTREAM', { model: routed.model.spec.name, reason: 'no answer' }));
}

/** A chunk stream over an already complete answer (gate buffer mode). */
export function* chunksOf(result: ChatResult, model: string): Generator<ChatChunk> {
  const base = {
    id: result.id,
    object: 'chat.completion.chunk' as const,
    created: result.created,
    model,
    // OpenAI sends these on every chunk; clients read them from any of them.
    ...(result.system_fingerprint !== undefined ? { system_fingerprint: result.system_fingerprint } : {}),
    ...(result.service_tier !== undefined ? { service_tier: result.service_tier } : {}),
  };
  for (const choice of result.choices) {
    yield { ...base, choices: [{ index: choice.index, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
    const content = choice.message?.content ?? '';
    if (content) yield { ...base, choices: [{ index: choice.index, delta: { content }, finish_reason: null, ...(choice.logprobs ? { logprobs: choice.logprobs } : {}) }] };
    if (choice.message?.tool_calls?.length) {
      yield { ...base, choices: [{ index: choice.index, delta: { tool_calls: choice.message.tool_calls.map((call, i) => ({ index: i, ...call })) }, finish_reason: null }] };
    }
    yield { ...base, choices: [{ index: choice.index, delta: {}, finish_reason: choice.finish_reason }] };
  }
  if (result.usage) yield { ...base, choices: [], usage: result.usage };
}

/** Chunks assembled into one result, so a gate can judge a streamed answer. */
export function resultOf(chunks: readonly ChatChunk[], usage: Usage | null): ChatResult {
  const first = chunks[0];
  let content = '';
  let finish: ChatResult['choices'][number]['finish_reason'] = null;
  // Token log-probabilities arrive per chunk; a logprob gate needs them all.
  const tokenLogprobs: unknown[] = [];
  for (const chunk of chunks) {
    for (const choice of chunk.choices) {
      if (choice.index !== 0) continue;
      if (typeof choice.delta?.content === 'string') content += choice.delta.content;
      if (choice.finish_reason) finish = choice.finish_reason;
      const perChunk = (choice.logprobs as { content?: unknown[] } | null | undefined)?.content;
      if (Array.isArray(perChunk)) tokenLogprobs.push(...perChunk);
    }
  }
  return {
    id: first?.id ?? 'stream',
    object: 'chat.completion',
    created: first?.created ?? Math.floor(Date.now() / 1000),
    model: first?.model ?? '',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish, ...(tokenLogprobs.length ? { logprobs: { content: tokenLogprobs } } : {}) }],
    ...(usage ? { usage } : {}),
  };
}
